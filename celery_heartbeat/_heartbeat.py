"""The handle of one installed app: its settings, registry, runs, sender and hooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery

from celery_heartbeat._delivery import DeliveryPolicy
from celery_heartbeat._hooks import Hooks
from celery_heartbeat._runs import RunBook
from celery_heartbeat._sender import BackgroundSender, Sender, SenderConfig
from celery_heartbeat._tasks import register_tasks
from celery_heartbeat.beat.automonitor import AutoMonitors
from celery_heartbeat.beat.liveness import install_beat_liveness
from celery_heartbeat.config.monitor import Monitor, MonitorSpec
from celery_heartbeat.config.registry import Registry
from celery_heartbeat.config.settings import Settings, settings_from_app

_ATTR = "_celery_heartbeat"


class Heartbeat:
    """What `install()` returns; one per app, cached on it (no module-level state)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.registry = Registry(settings.urls, self._task_option)
        self.runs = RunBook(settings.coalesce_seconds)
        self.sender: Sender = BackgroundSender(
            SenderConfig(
                policy=DeliveryPolicy(
                    timeout=settings.timeout,
                    max_attempts=settings.max_attempts,
                    backoff_max=settings.backoff_max,
                ),
                max_age=settings.max_age,
                backoff_max=settings.backoff_max,
                shutdown_timeout=settings.shutdown_timeout,
            )
        )
        self.auto = AutoMonitors(app, settings, self.registry.resolve)
        self.hooks = Hooks(self)

    def _task_option(self, task_name: str) -> MonitorSpec:
        task = self.app.tasks.get(task_name)
        option: MonitorSpec = getattr(task, "heartbeat", None) if task is not None else None
        return option

    def monitor_for(self, task_name: str) -> Monitor | None:
        """The monitor a task pings (None: it pings nothing)."""
        return self.registry.resolve(task_name)

    def monitor_for_run(
        self, task_name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
    ) -> Monitor | None:
        """The monitor one run pings: an explicit mapping, else the beat entry it came from (auto)."""
        monitor = self.registry.resolve(task_name)
        if monitor is None and self.auto.active:
            return self.auto.lookup(task_name, args, kwargs)
        return monitor

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver what is pending, waiting at most `timeout` seconds; True when nothing is left."""
        return self.sender.flush(timeout)

    def stats(self) -> dict[str, int]:
        """This process's counters: sent, failed, rejected, retried, coalesced, dropped, pending."""
        out = self.sender.stats()
        out["coalesced"] += self.runs.coalesced
        return out

    def uninstall(self) -> None:
        """Disconnect every hook and flush briefly; the app behaves as if never installed."""
        self.hooks.disconnect()
        self.sender.close(self.settings.shutdown_timeout)
        if getattr(self.app, _ATTR, None) is self:
            delattr(self.app, _ATTR)

    def _activate(self) -> None:
        if self.settings.enabled:
            self.hooks.connect()


def installed(app: Celery) -> Heartbeat | None:
    """The handle of an app that went through install(), or None."""
    handle: Heartbeat | None = getattr(app, _ATTR, None)
    return handle


def install(app: Celery, *, urls: Mapping[str, Any] | None = None, **settings: Any) -> Heartbeat:
    """Wire heartbeat pings into `app` from its `heartbeat_*` settings (keywords override them).

    Idempotent: installing again replaces the previous wiring, so a ping is never
    doubled. No network call and no thread start happen here.
    """
    overrides = dict(settings)
    if urls is not None:
        overrides["urls"] = urls
    parsed = settings_from_app(app.conf, overrides)
    # Always, also when disabled: canvases built with them must never fail with NotRegistered.
    register_tasks(app)
    previous = installed(app)
    if previous is not None:
        if previous.settings == parsed:
            return previous
        previous.uninstall()
    handle = Heartbeat(app, parsed)
    setattr(app, _ATTR, handle)
    handle._activate()
    if parsed.enabled and parsed.beat_url is not None:
        install_beat_liveness(app, parsed.beat_url, parsed.beat_every)
    return handle
