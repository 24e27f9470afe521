"""The web app: the health router next to the app's own endpoints."""

from __future__ import annotations

from fastapi import FastAPI

from celery_heartbeat.contrib.fastapi import health_router
from fastapi_app.worker import app as celery_app
from fastapi_app.worker import nightly_report

app = FastAPI(title="fastapi_app")
app.include_router(health_router(celery_app))  # GET /health/celery, /health/celery/queue/{name}


@app.post("/reports", status_code=202)
def request_report() -> dict[str, str]:
    """Queue a report now; its heartbeat ping goes out from the worker when it succeeds."""
    return {"task_id": nightly_report.delay().id}
