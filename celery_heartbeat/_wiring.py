"""What one installed app's task hooks work with: settings, registry, auto-monitors, sender and run book.

Rebuilt when the app's settings change (the configuration loaded after
`install()`), while the sender and run book are kept as long as their own
settings are unchanged. Both are created on first use, not at `install()`:
they register fork hooks that Python can never remove, so an install that
sends nothing (or is replaced) leaves none behind.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery

from celery_heartbeat.beat.automonitor import AutoMonitors
from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.registry import Registry
from celery_heartbeat.config.settings import Settings
from celery_heartbeat.delivery.runs import RunBook
from celery_heartbeat.delivery.sender import BackgroundSender, Sender, SenderConfig


def sender_config(settings: Settings) -> SenderConfig:
    return SenderConfig(
        timeout=settings.timeout,
        max_age=settings.max_age,
        backoff_max=settings.backoff_max,
        shutdown_timeout=settings.shutdown_timeout,
    )


class Delivery:
    """The app's sender and run book, each created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.config = sender_config(settings)
        self.window = settings.coalesce_seconds
        self._lock = threading.Lock()
        self._sender: Sender | None = None
        self._runs: RunBook | None = None

    @property
    def sender(self) -> Sender:
        sender = self._sender
        if sender is None:
            with self._lock:
                if self._sender is None:
                    self._sender = BackgroundSender(self.config)
                sender = self._sender
        return sender

    @property
    def runs(self) -> RunBook:
        runs = self._runs
        if runs is None:
            with self._lock:
                if self._runs is None:
                    self._runs = RunBook(self.window)
                runs = self._runs
        return runs

    def fits(self, settings: Settings) -> bool:
        """Whether these settings would build the same sender and run book."""
        return self.config == sender_config(settings) and self.window == settings.coalesce_seconds

    def stats(self) -> dict[str, int]:
        out = self.sender.stats()
        out["coalesced"] += self._runs.coalesced if self._runs is not None else 0
        return out

    def expedite(self, timeout: float) -> None:
        if self._sender is not None:
            self._sender.expedite(timeout)

    def flush(self, timeout: float) -> bool:
        return True if self._sender is None else self._sender.flush(timeout)

    def close(self, timeout: float) -> None:
        if self._sender is not None:
            self._sender.close(timeout)


class Wiring:
    """One consistent view for the hooks: swapped whole when the settings change, never edited."""

    def __init__(self, app: Celery, settings: Settings, registry: Registry, delivery: Delivery) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry
        self.delivery = delivery
        self.auto = AutoMonitors(app, settings, registry.resolve)

    def monitor_for_run(
        self, task_name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
    ) -> Monitor | None:
        """The monitor one run pings: an explicit mapping, else the beat entry it came from (auto)."""
        monitor = self.registry.resolve(task_name)
        if monitor is None and self.auto.active:
            return self.auto.lookup(task_name, args, kwargs)
        return monitor
