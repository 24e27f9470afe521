"""The quickstart's Celery app: no broker server, a local receiver as the monitoring service.

``examples/quickstart.py`` sets two environment variables before anything
imports this module (in its own process, the worker and ``celery beat``):

- ``QUICKSTART_DIR``: a temporary directory holding the filesystem broker's
  queues and the chord's result files;
- ``QUICKSTART_MONITORS``: the base URL of the PingReceiver standing in for
  Healthchecks.io (every monitor below is ``<base>/<name>``).

In a real project the wiring is the same three calls: ``heartbeat_urls`` in the
settings, ``install(app)`` and ``install_beat_liveness(app, ...)``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery, Task

import celery_heartbeat

STATE_DIR = Path(os.environ["QUICKSTART_DIR"])
MONITORS = os.environ["QUICKSTART_MONITORS"].rstrip("/")

#: How often beat runs the periodic task and pings its own liveness monitor (seconds).
PERIOD = 2.0


def monitor(name: str) -> dict[str, Any]:
    """A Healthchecks-style monitor on the local receiver (``provider`` forced: it is not hc-ping.com)."""
    return {"url": f"{MONITORS}/{name}", "provider": "healthchecks"}


def _folder(name: str) -> str:
    path = STATE_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


app = Celery("quickstart_app")
app.conf.update(
    # kombu's filesystem:// transport, writing each message file atomically (see transport.py).
    broker_transport="quickstart_app.transport:Transport",
    broker_transport_options={
        "data_folder_in": _folder("queues"),
        "data_folder_out": _folder("queues"),
        "control_folder": _folder("control"),
        "processed_folder": _folder("processed"),
        "store_processed": False,
        "polling_interval": 0.2,
    },
    result_backend=f"file://{_folder('results')}",
    worker_enable_remote_control=False,
    worker_prefetch_multiplier=1,
    beat_schedule={
        "nightly-report": {"task": "quickstart_app.tasks.nightly_report", "schedule": PERIOD},
    },
    beat_max_loop_interval=1.0,
    # Task name -> monitor. In production these URLs come from environment variables.
    heartbeat_urls={
        "quickstart_app.tasks.nightly_report": monitor("nightly-report"),
        "quickstart_app.tasks.import_feed": monitor("import-feed"),
        "quickstart_app.tasks.sync_invoices": monitor("invoice-sync"),
        "weekly-crawl": monitor("weekly-crawl"),  # a name for with_heartbeat(canvas, "weekly-crawl")
    },
    heartbeat_coalesce_seconds=0,  # the default (10 s) would merge these fast demo runs
    heartbeat_shutdown_timeout=2.0,
)
celery_heartbeat.install(app)
# Is celery beat itself alive? An entry in beat_schedule, pinged through a worker every PERIOD s.
celery_heartbeat.install_beat_liveness(app, monitor("beat-liveness"), every=PERIOD)


@app.task
def nightly_report() -> int:
    """A periodic task: beat sends it every PERIOD seconds, each success pings its monitor."""
    time.sleep(0.1)
    return 42


@app.task(bind=True, max_retries=3)
def import_feed(self: Task) -> str:
    """Fails its first attempt and retries: a retry is not a failure, so only a success ping follows."""
    if self.request.retries == 0:
        raise self.retry(exc=TimeoutError("feed server slow"), countdown=0.5)
    return "imported"


@app.task
def sync_invoices() -> None:
    """Always fails: its monitor gets a failure ping at once, carrying only the exception type."""
    raise ConnectionError("payment API unreachable")


@app.task
def fetch_page(page: int) -> int:
    """One chord header task."""
    time.sleep(0.1)
    return page * 10


@app.task
def aggregate(sizes: list[int]) -> int:
    """The chord body: the ``weekly-crawl`` monitor is pinged after it succeeds."""
    return sum(sizes)
