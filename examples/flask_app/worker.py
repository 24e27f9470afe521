"""The Celery app: one ``install()`` call wires the heartbeat pings from ``app.conf``."""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

import celery_heartbeat

app = Celery("flask_app", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
app.conf.beat_schedule = {
    "nightly-report": {"task": "flask_app.worker.nightly_report", "schedule": crontab(hour=2, minute=0)},
}
app.conf.heartbeat_urls = {
    "flask_app.worker.nightly_report": os.environ.get("HEARTBEAT_NIGHTLY_REPORT_URL"),
}
app.conf.heartbeat_beat_url = os.environ.get("HEARTBEAT_BEAT_URL")  # is celery beat itself alive?
celery_heartbeat.install(app)


@app.task
def nightly_report() -> str:
    """A periodic task: its monitor hears from it after every successful run."""
    return "report sent"
