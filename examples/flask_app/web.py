"""The web app: the health blueprint next to the app's own views."""

from __future__ import annotations

from flask import Flask

from celery_heartbeat.contrib.flask import health_blueprint
from flask_app.worker import app as celery_app
from flask_app.worker import nightly_report

app = Flask(__name__)
app.register_blueprint(health_blueprint(celery_app))  # GET /health/celery, /health/celery/queue/<name>


@app.post("/reports")
def request_report() -> tuple[dict[str, str], int]:
    """Queue a report now; its heartbeat ping goes out from the worker when it succeeds."""
    return {"task_id": nightly_report.delay().id}, 202
