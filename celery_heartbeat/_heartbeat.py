"""`install()`, `install_beat_liveness()` and the handle they return: the library's top layer.

Settings are validated at `install()` from what the configuration holds then,
and read again, once, when the worker or beat starts or the first task runs:
`install()` may run before `config_from_object()` or before settings are
assigned. Everything the library keeps about an app lives in its `AppState`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat._hooks import Hooks
from celery_heartbeat._state import AppState, forget, peek, real_app, state_of
from celery_heartbeat._tasks import register_tasks
from celery_heartbeat._wiring import Delivery, Wiring
from celery_heartbeat.beat import liveness as beat_liveness
from celery_heartbeat.config import checks
from celery_heartbeat.config.liveness import BeatLiveness
from celery_heartbeat.config.monitor import Monitor, MonitorValue, parse_monitor
from celery_heartbeat.config.registry import Registry, check_name
from celery_heartbeat.config.settings import Settings
from celery_heartbeat.probe.wiring import ProbeWiring

logger = logging.getLogger("celery_heartbeat")


class Heartbeat:
    """What `install()` returns; one per app, kept in the app's state (no module-level state)."""

    def __init__(self, state: AppState, settings: Settings) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._wiring = self._wire(settings, Delivery(settings))
        self._hooks = Hooks(state, self._wiring, self._confirm)
        #: The beat liveness came from install_beat_liveness() (kept), not from heartbeat_beat_url.
        self._explicit_liveness = False

    @property
    def settings(self) -> Settings:
        """The settings in effect (validated; URLs and keys redacted in its repr)."""
        return self._wiring.settings

    def __repr__(self) -> str:
        enabled = "enabled" if self.settings.enabled else "disabled"
        return f"<Heartbeat app={self._state.app.main!r} {enabled}, {len(self.settings.urls)} heartbeat_urls entries>"

    def monitor_for(self, task_name: str) -> Monitor | None:
        """The monitor a task pings (None: it pings nothing)."""
        return self._wiring.registry.resolve(task_name)

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver what is pending, waiting at most `timeout` seconds; True when nothing is left."""
        end = time.monotonic() + timeout
        drained = self._hooks.drain(timeout)  # main process: what pool processes handed over first
        return self._wiring.delivery.flush(max(0.0, end - time.monotonic())) and drained

    def stats(self) -> dict[str, int]:
        """This process's counters: sent, failed, rejected, retried, coalesced, dropped, pending."""
        return self._wiring.delivery.stats()

    def uninstall(self) -> None:
        """Undo install(): every receiver, the beat-liveness entry, the app's state; flush briefly."""
        state = self._state
        if state.liveness is not None:
            beat_liveness.disable(state)
        if isinstance(state.probes, ProbeWiring):
            state.probes.disconnect()
            state.probes = None
        self._hooks.close_handover(self.settings.shutdown_timeout)
        self._wiring.delivery.close(self.settings.shutdown_timeout)
        if peek(state.app) is state:
            forget(state.app)
        else:
            state.disconnect()

    # -- internals ------------------------------------------------------------------------

    def _wire(self, settings: Settings, delivery: Delivery) -> Wiring:
        registry = Registry(settings.urls, self._state.task_option)
        self._state.settings, self._state.registry = settings, registry
        return Wiring(self._state.app, settings, registry, delivery)

    def _activate(self) -> None:
        self._hooks.connect_lifecycle()
        probes = ProbeWiring(self._state)  # inert until a worker or beat starts with probe settings
        self._state.probes = probes
        probes.connect()
        self._apply_enabled()

    def _apply_enabled(self) -> None:
        settings = self.settings
        if settings.enabled:
            self._hooks.connect_tasks()
        else:
            self._hooks.disconnect_tasks()
        if self._explicit_liveness:
            return
        if settings.enabled and settings.beat_url is not None:
            beat_liveness.enable(self._state, BeatLiveness(settings.beat_url, settings.beat_every))
        elif self._state.liveness is not None:
            beat_liveness.disable(self._state)

    def _replace(self, settings: Settings) -> None:
        """Use new settings from now on; the sender and run book stay when their own settings did not change."""
        old = self._wiring
        delivery = old.delivery if old.delivery.fits(settings) else Delivery(settings)
        self._wiring = self._hooks.wiring = self._wire(settings, delivery)
        if delivery is not old.delivery:
            old.delivery.close(0.0)
        self._apply_enabled()

    def _warn(self, warnings: list[str]) -> None:
        for warning in warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                logger.warning("celery-heartbeat: %s", warning)

    def _confirm(self, where: str, strict: bool = False) -> None:
        """Read the configuration again, once: it may have been loaded after install().

        A bad value found now is logged (a worker or beat keeps the settings install()
        validated: it must not fail tasks), or raised when `strict` (the CLI, sync).
        """
        if self._hooks.confirmed:
            return
        with self._lock:
            if self._hooks.confirmed:
                return
            try:
                settings, warnings = self._state.read_settings()
            except ConfigurationError as exc:
                if strict:
                    raise
                logger.error(
                    "celery-heartbeat: invalid configuration at %s: %s (keeping the settings install() validated)",
                    where,
                    exc,
                )
                self._hooks.confirmed = True
                return
            self._warn(warnings)
            if settings != self.settings:
                logger.info(
                    "celery-heartbeat: settings read again at %s: %s", where, ", ".join(settings.changed(self.settings))
                )
                self._replace(settings)
            self._hooks.confirmed = True


def installed(app: Any) -> Heartbeat | None:
    """The handle of an app that went through install(), or None."""
    state = peek(app)
    handle = state.handle if state is not None else None
    return handle if isinstance(handle, Heartbeat) else None


def install(app: Celery, *, urls: Mapping[str, Any] | None = None, **settings: Any) -> Heartbeat:
    """Wire heartbeat pings into `app` from its `heartbeat_*` settings (keywords override them).

    Validates what the configuration holds now; it is read again when the worker
    or beat starts (or the first task runs), so install() may come before the
    configuration is loaded. Idempotent: installing again with the same settings
    returns the same handle; with different ones it replaces the wiring (a
    warning names what changed), so a ping is never doubled. `app` may be a
    proxy such as `celery.current_app`. No network call and no thread start here.
    """
    real = real_app(app)
    overrides = dict(settings)
    if urls is not None:
        overrides["urls"] = urls
    state = state_of(real)
    previous_overrides = state.overrides
    state.overrides = overrides
    try:
        parsed, warnings = state.read_settings()
    except ConfigurationError:
        state.overrides = previous_overrides
        raise
    # Always, also when disabled: canvases built with them must never fail with NotRegistered.
    register_tasks(real)
    previous = installed(real)
    if previous is not None:
        previous._warn(warnings)
        if previous.settings == parsed:
            return previous
        logger.warning(
            "celery-heartbeat: install() called again with different settings; replacing: %s",
            ", ".join(parsed.changed(previous.settings)),
        )
        previous._replace(parsed)
        previous._hooks.confirmed = False
        return previous
    handle = Heartbeat(state, parsed)
    handle._warn(warnings)
    state.handle = handle
    state.confirm = functools.partial(handle._confirm, strict=True)
    handle._activate()
    return handle


def install_beat_liveness(
    app: Celery, url: MonitorValue | Monitor, every: float = 60.0, *, queue: str | None = None
) -> None:
    """Add a `beat_schedule` entry that pings `url` through a worker every `every` seconds.

    The entry is also re-applied when beat starts (`beat_init`), so a later
    `app.conf.beat_schedule = {...}` cannot silently drop it; with a database or
    Redis scheduler it is written to that store then. `url` None or "" (an
    unset environment variable) disables it quietly, as in `heartbeat_urls`.
    `url` may also be a monitor dict or a name from `heartbeat_urls`. Installs
    the app first when `install()` was not called yet.
    """
    period = checks.seconds("every", every)
    if queue is not None:
        checks.name("queue", queue, what="queue name")
    handle = installed(app) or install(app)
    if isinstance(url, Monitor):
        monitor: Monitor | None = url
    elif isinstance(url, str) and url.strip() and "://" not in url:
        # A name from heartbeat_urls, as the canvas helpers accept.
        monitor = handle._wiring.registry.by_name(check_name("heartbeat_beat_url", url))
        if monitor is None:
            raise ConfigurationError("heartbeat_beat_url", url, "not a URL, and no heartbeat_urls entry of that name")
    else:
        monitor = parse_monitor("heartbeat_beat_url", url)
    if monitor is None or not handle.settings.enabled:
        return
    handle._explicit_liveness = True
    beat_liveness.enable(handle._state, BeatLiveness(monitor, period, queue))
