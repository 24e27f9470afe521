"""The beat-liveness value: which monitor, how often, on which queue (validated, secret-free entry)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.names import BEAT_TASK

ENTRY_NAME = "celery-heartbeat-beat-liveness"


@dataclass(frozen=True)
class BeatLiveness:
    """One app's beat-liveness monitor and period (kept in the app's state: workers resolve the URL there)."""

    monitor: Monitor
    every: float
    queue: str | None = None

    def entry(self) -> dict[str, Any]:
        """The `beat_schedule` entry. It carries no URL: schedule stores and messages stay secret-free."""
        options: dict[str, Any] = {"expires": self.every}
        if self.queue is not None:
            options["queue"] = self.queue
        return {"task": BEAT_TASK, "schedule": timedelta(seconds=self.every), "options": options}
