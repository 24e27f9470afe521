"""The Celery app the Kubernetes manifests run: probes configured from the environment.

    CELERY_BROKER_URL=redis://... celery -A proj worker
    CELERY_HEARTBEAT_PROBE_DIR=/run/celery-probe    # the emptyDir both sides see

The probe command reads $CELERY_HEARTBEAT_PROBE_DIR too, so one variable in the
Deployment configures the writer (this app) and the reader (the probe).
"""

import os

from celery import Celery

import celery_heartbeat

app = Celery("proj", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "celery")
app.conf.task_time_limit = 300  # a task stuck longer than this (plus --max-age) makes a solo worker not live

celery_heartbeat.install(
    app,
    probe_dir=os.environ.get("CELERY_HEARTBEAT_PROBE_DIR"),  # unset: no probe files
    probe_port=os.environ.get("CELERY_HEARTBEAT_PROBE_PORT"),  # unset: no HTTP endpoint
)


@app.task
def add(x: int, y: int) -> int:
    return x + y
