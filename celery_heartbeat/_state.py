"""The one place per-app state lives: an `AppState` cached on the Celery app in ONE attribute.

It holds the installed settings and registry, the handle `install()` returned,
the beat-liveness value, the health-probe cache, the once-per-process flags
and every signal receiver the library connected for the app, so `uninstall()`
has exactly one thing to undo. No other module keeps per-app or module-level
mutable state. App proxies (`celery.current_app`) are resolved here, so the
state (and the hooks' `task.app is app` test) always concern the real app.
"""

from __future__ import annotations

from typing import Any, Callable

from celery import Celery
from celery.utils.dispatch import Signal

from celery_heartbeat.config.app_conf import settings_from_conf
from celery_heartbeat.config.liveness import BeatLiveness
from celery_heartbeat.config.monitor import MonitorValue
from celery_heartbeat.config.registry import Registry
from celery_heartbeat.config.settings import Settings

ATTRIBUTE = "_celery_heartbeat"


def real_app(app: Any) -> Celery:
    """The app behind a proxy (`celery.current_app`, a `Proxy` to an app), or the app itself."""
    get = getattr(app, "_get_current_object", None)
    resolved: Celery = get() if callable(get) else app
    return resolved


class AppState:
    """Everything the library keeps about one app."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        #: install() keywords: they override app.conf whenever the settings are re-read.
        self.overrides: dict[str, Any] = {}
        #: The installed settings and registry (None: not installed).
        self.settings: Settings | None = None
        self.registry: Registry | None = None
        #: The Heartbeat handle (typed loosely: it lives in a higher layer).
        self.handle: object | None = None
        self.liveness: BeatLiveness | None = None
        #: The health checks' probe cache (owned by `health.checks`).
        self.health: object | None = None
        #: Duplicate-beat detection running in this beat process (owned by `beat.announcer`).
        self.beat_watch: object | None = None
        #: The container probes' bootsteps, receivers and runtime (owned by `probe.wiring`).
        self.probes: object | None = None
        #: Things done at most once per process for this app (e.g. "sync on beat start").
        self.done: set[str] = set()
        #: Set by the installed handle: reads the configuration again once (it may load after install()).
        self.confirm: Callable[[str], None] | None = None
        self._receivers: dict[str, list[tuple[Signal, str]]] = {}

    # -- receivers ----------------------------------------------------------------------------

    def connect(self, group: str, signal: Signal, receiver: Callable[..., None]) -> None:
        """Connect `receiver` (strongly) under `group`; reconnecting the same group and signal replaces it."""
        uid = f"celery_heartbeat:{id(self)}:{group}:{signal.name}"
        signal.disconnect(dispatch_uid=uid)
        signal.connect(receiver, weak=False, dispatch_uid=uid)
        pairs = self._receivers.setdefault(group, [])
        if (signal, uid) not in pairs:
            pairs.append((signal, uid))

    def disconnect(self, group: str | None = None) -> None:
        """Disconnect one group of receivers, or all of them."""
        for name in [group] if group is not None else list(self._receivers):
            for signal, uid in self._receivers.pop(name, []):
                signal.disconnect(dispatch_uid=uid)

    def connected(self, group: str) -> bool:
        return bool(self._receivers.get(group))

    # -- settings -----------------------------------------------------------------------------

    def read_settings(self) -> tuple[Settings, list[str]]:
        """The app's configuration as it is now, with the install() keywords on top (validated)."""
        return settings_from_conf(self.app.conf, self.overrides, self.app.namespace)

    def current_settings(self) -> Settings:
        """This app's settings, installed or not: the installed ones, else a fresh read of app.conf."""
        if self.confirm is not None:
            self.confirm("first use")
        return self.settings if self.settings is not None else self.read_settings()[0]

    def current_registry(self) -> Registry:
        """The installed registry, or one built from the app's own settings and task options."""
        if self.confirm is not None:
            self.confirm("first use")
        if self.registry is not None:
            return self.registry
        return Registry(self.current_settings().urls, self.task_option)

    def task_option(self, task_name: str) -> MonitorValue:
        """A task's own `heartbeat=` option (None when it has none)."""
        task = self.app.tasks.get(task_name)
        option: MonitorValue = getattr(task, "heartbeat", None) if task is not None else None
        return option


def state_of(app: Any) -> AppState:
    """The app's state, created on first use."""
    real = real_app(app)
    state = real.__dict__.get(ATTRIBUTE)
    if not isinstance(state, AppState):
        state = AppState(real)
        setattr(real, ATTRIBUTE, state)
    return state


def peek(app: Any) -> AppState | None:
    """The app's state if it has one (never creates it)."""
    if app is None:
        return None
    state = getattr(real_app(app), "__dict__", {}).get(ATTRIBUTE)
    return state if isinstance(state, AppState) else None


def forget(app: Any) -> None:
    """Drop the app's state: every receiver disconnected, the attribute removed."""
    real = real_app(app)
    state = real.__dict__.pop(ATTRIBUTE, None)
    if isinstance(state, AppState):
        state.disconnect()


def settings_of(app: Any) -> Settings:
    """This app's settings, installed or not (the one place that question is answered)."""
    state = peek(app)
    if state is not None:
        return state.current_settings()
    real = real_app(app)
    return settings_from_conf(real.conf, {}, real.namespace)[0]


def registry_of(app: Any) -> Registry:
    """This app's registry, installed or not."""
    state = peek(app)
    return state.current_registry() if state is not None else AppState(real_app(app)).current_registry()
