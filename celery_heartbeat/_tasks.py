"""The library's own tasks: the canvas ping and the beat-liveness ping.

They are registered on every installed app, also when `heartbeat_enabled` is
False (they then send nothing), so a canvas built with them never fails with
NotRegistered. Both deliver synchronously, because the ping *is* the task's
work, and bound their time: a worker slot is held at most timeout x attempts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Union

from celery import Celery, Task, signature
from celery.canvas import _chain, maybe_signature

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat._redact import redact, redact_value
from celery_heartbeat._state import peek, registry_of, settings_of
from celery_heartbeat.beat.duplicates import describe, duplicate_beats
from celery_heartbeat.config.monitor import Monitor, parse_monitor
from celery_heartbeat.config.names import BEAT_TASK, PING_TASK
from celery_heartbeat.config.providers import Kind, WireRequest
from celery_heartbeat.config.registry import check_name
from celery_heartbeat.config.settings import Settings
from celery_heartbeat.delivery.outcome import Outcome
from celery_heartbeat.delivery.ping import OutgoingPing
from celery_heartbeat.delivery.retry import RetryPolicy, deliver
from celery_heartbeat.delivery.transport import RequestsTransport

logger = logging.getLogger("celery_heartbeat")

__all__ = ["BEAT_TASK", "PING_TASK", "check_kind", "check_target", "register_tasks", "resolve_target", "send_now"]

KINDS: tuple[Kind, ...] = ("start", "success", "failure")

Target = Union[str, Mapping[str, Any], None]
"""What travels in a ping task's message: a `heartbeat_urls` name, a URL, a monitor dict, or None."""


def check_kind(kind: object) -> Kind:
    for known in KINDS:
        if kind == known:
            return known
    raise ConfigurationError("kind", kind, f"expected one of {list(KINDS)}")


def check_target(target: object) -> Target:
    """Validate a monitor reference where it is written, so a typo fails at build time, not on a worker.

    A name (no ``://``) is resolved on the worker from its `heartbeat_urls`, so it is
    only checked for shape here: the producer may legitimately lack the URLs.
    """
    if target is None or target == "":
        return None
    if isinstance(target, str):
        if "://" in target:
            monitor = parse_monitor("url_or_monitor", target)
            return None if monitor is None else monitor.url
        return check_name("url_or_monitor", target)
    if isinstance(target, Mapping):
        if parse_monitor("url_or_monitor", target) is None:
            return None
        return {str(key): value for key, value in target.items()}
    raise ConfigurationError("url_or_monitor", target, "expected a URL, a monitor dict or a heartbeat_urls name")


def resolve_target(app: Celery, target: Target) -> Monitor | None:
    """The monitor a ping task's target means on this worker (None: nothing to ping)."""
    if target is None:
        return None
    if isinstance(target, str) and "://" not in target:
        return registry_of(app).by_name(target)
    return parse_monitor("url_or_monitor", target)


def send_now(
    monitor: Monitor,
    kind: Kind,
    settings: Settings,
    *,
    run_id: str | None = None,
    detail: str | None = None,
) -> tuple[WireRequest | None, Outcome | None]:
    """Deliver one ping in this thread, within timeout x attempts; (None, None) if the provider lacks `kind`."""
    request = OutgoingPing(monitor, kind, run_id, detail=detail).request()
    if request is None:
        return None, None
    policy = RetryPolicy(timeout=settings.timeout, max_attempts=settings.max_attempts, backoff_max=settings.backoff_max)
    budget = time.monotonic() + settings.timeout * settings.max_attempts
    transport = RequestsTransport()
    try:
        return request, deliver(transport, request, policy, deadline=budget)
    finally:
        transport.close()


def _wants(monitor: Monitor, kind: Kind, settings: Settings) -> bool:
    if kind == "failure":
        return settings.send_failure if monitor.failure is None else monitor.failure
    return True


def _log(request: WireRequest, outcome: Outcome, what: str) -> None:
    if outcome.sent:
        logger.debug("celery-heartbeat: %s sent to %s (HTTP %s)", what, redact(request.url), outcome.status)
    else:
        logger.warning(
            "celery-heartbeat: %s to %s failed after %d attempt(s): %s",
            what,
            redact(request.url),
            outcome.attempts,
            outcome.error,
        )


def ping_task(
    self: Task,
    *results: Any,
    target: Target = None,
    kind: str = "success",
    passthrough: bool = False,
    then: Any = None,
) -> Any:
    """Ping `target` now, then hand the parent's result on unchanged. Never fails the canvas.

    A ping link never changes a chain's data flow: linked after a task, it receives
    that task's result and returns it (a chord body: the header's results). With
    `then` (a canvas, from `with_heartbeat(start=True)`), the task replaces itself
    with that canvas once the ping is delivered, passing on what it received.
    `passthrough` is accepted for messages sent by earlier versions.
    """
    value = results[0] if results else None
    _ping_now(self, target, kind)
    if then is None:
        return value
    return self.replace(_with_args(signature(then, app=self.app), results))


def _with_args(canvas: Any, args: tuple[Any, ...]) -> Any:
    """`canvas` given the arguments its start ping received, as Celery gives a canvas partial arguments."""
    if not args:
        return canvas
    if isinstance(canvas, _chain):  # the first task takes them (a chain's own args are lost by replace)
        first, *rest = [maybe_signature(task, app=canvas.app) for task in canvas.tasks]
        return _chain(first.clone(args), *rest, app=canvas.app, **canvas.options)
    return canvas.clone(args)


def _ping_now(self: Task, target: Target, kind: str) -> None:
    """Deliver the ping in this thread (the ping is this task's work); log, never raise."""
    try:
        settings = settings_of(self.app)
        if not settings.enabled:
            return
        monitor = resolve_target(self.app, target)
        if monitor is None:
            if isinstance(target, str) and "://" not in target:
                logger.error("celery-heartbeat: no heartbeat_urls entry named %s on this worker", redact_value(target))
            return
        checked = check_kind(kind)
        if not _wants(monitor, checked, settings):
            return
        request = self.request
        run_id = request.root_id or request.group or request.id
        wire, outcome = send_now(monitor, checked, settings, run_id=run_id)
        if wire is not None and outcome is not None:
            _log(wire, outcome, f"canvas {checked} ping")
    except Exception:
        logger.exception("celery-heartbeat: canvas ping failed (the canvas is unaffected)")


def beat_liveness_task(self: Task) -> None:
    """Ping the beat-liveness monitor: beat sent this message, the broker kept it, a worker ran it."""
    try:
        settings = settings_of(self.app)
        if not settings.enabled:
            return
        state = peek(self.app)
        liveness = state.liveness if state is not None else None
        if liveness is None:
            logger.error(
                "celery-heartbeat: beat-liveness task received, but this worker's app has no beat liveness "
                "(heartbeat_beat_url / install_beat_liveness()). If you turned it off, beat still has the "
                "'celery-heartbeat-beat-liveness' entry: with django-celery-beat, restart beat once (it then "
                "disables that periodic task) or disable it in the admin; with another persistent scheduler, "
                "delete the entry from its store. If you want it on, configure it where the workers import the app."
            )
            return
        # -- duplicate beats (beat/duplicates.py): the beat that sent this message found others.
        beats = duplicate_beats(self.request)
        if beats:
            logger.error("celery-heartbeat: %s; every periodic task is sent more than once", describe(beats))
            if not _wants(liveness.monitor, "failure", settings):
                return  # never a success ping while beats are duplicated: silence alarms instead
            kind: Kind = "failure"
        else:
            kind = "success"
        # -- end duplicate beats
        wire, outcome = send_now(
            liveness.monitor, kind, settings, run_id=self.request.id, detail=describe(beats) if beats else None
        )
        if wire is not None and outcome is not None:
            _log(wire, outcome, "beat-liveness ping" if kind == "success" else "duplicate-beats failure ping")
    except Exception:
        logger.exception("celery-heartbeat: beat-liveness ping failed")


def register_tasks(app: Celery) -> None:
    """Register both tasks on `app` only (never shared with other apps); idempotent, finalizes nothing.

    Bound tasks: Celery then always sends them as messages when used as an errback,
    instead of calling them inline in the process that handles the failure.
    """
    # Eager registration unless the app refuses it (autofinalize=False): then at finalize.
    lazy = not (app.finalized or app.autofinalize)
    options: dict[str, Any] = {"bind": True, "shared": False, "lazy": lazy, "ignore_result": False}
    if PING_TASK not in app._tasks:
        app.task(name=PING_TASK, **options)(ping_task)
    if BEAT_TASK not in app._tasks:
        app.task(name=BEAT_TASK, **dict(options, ignore_result=True))(beat_liveness_task)
