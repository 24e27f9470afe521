"""Tasks found by ``app.autodiscover_tasks()``."""

from __future__ import annotations

from celery import shared_task


@shared_task
def nightly_report() -> str:
    """A periodic task: its monitor hears from it after every successful run."""
    return "report sent"
