"""Health checks for HTTP probes: are workers there, and is a queue keeping up?

Heartbeats prove that work happened; these checks prove that someone is there
to do it. Both talk to the broker on a fresh connection with every timeout
bounded, so a probe answers within its ``timeout`` even when the broker is
down (status ``down``), and never retries a connection inside a probe.

::

    from celery_heartbeat.health import check_queue, check_workers

    report = check_workers(app, timeout=3.0, min_workers=1)
    report.ok, report.status, report.http_status, report.to_json()
    # (True, 'ok', 200, '{"status":"ok","workers":1}')
    check_queue(app, "default", threshold=1000).to_json()
    # '{"status":"ok","queue":"default","depth":0,"threshold":1000}'

:func:`check_workers` asks workers for their ``active_queues`` and counts
only those consuming one of this app's own queues (``task_default_queue``
and ``task_queues``), or ``queue=`` when given: another app's workers that
share the broker (and its control exchange) are not this app's workers. It
returns as soon as ``min_workers`` of them have answered (so a healthy
answer takes milliseconds, not the full timeout); only an unhealthy answer
waits the timeout out.

:func:`check_queue` reads the queue's depth from the broker through kombu: on
Redis the priority sub-queues are summed and ``global_keyprefix`` honoured (an
absent Redis queue is an empty one: Redis deletes empty lists); on RabbitMQ a
queue that does not exist is ``unknown_queue``.

Results are cached on the Celery app for ``cache_seconds`` (default 1 s), and
concurrent identical probes share one broker round trip, so a burst of probes
cannot flood busy workers with a ping storm.

The worker check needs a broker with broadcast support (Redis, RabbitMQ);
on others (SQS) no worker can answer and it reports ``no_workers``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from celery_heartbeat._exceptions import BrokerDown, ConfigurationError
from celery_heartbeat._state import state_of
from celery_heartbeat.config import checks
from celery_heartbeat.health.broker import (
    Replies,
    broadcast_until,
    load_transport,
    probe_connection,
    queue_depth,
)
from celery_heartbeat.health.coverage import Coverage, Route, schedule_routes
from celery_heartbeat.health.queues import consumers_by_queue, consuming, own_queues

__all__ = ["HealthReport", "HealthStatus", "check_queue", "check_workers"]

#: The ``status`` of a :class:`HealthReport`.
HealthStatus = Literal["ok", "no_workers", "too_few_workers", "uncovered", "backlog", "unknown_queue", "down"]

_CACHE_MAX_ENTRIES = 256


@dataclass(frozen=True)
class HealthReport:
    """The answer of a health check: a status and the JSON body an HTTP probe returns.

    ``body`` is read-only (reports may be shared through the result cache);
    its keys, in this order when present: ``status``, ``workers``, ``detail``,
    ``queue``, ``depth``, ``threshold``, ``uncovered``, ``error``.
    """

    status: HealthStatus
    body: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        body = {"status": self.status}
        body.update((key, value) for key, value in self.body.items() if key != "status")
        object.__setattr__(self, "body", MappingProxyType(body))

    @property
    def ok(self) -> bool:
        """True when the status is ``ok``."""
        return self.status == "ok"

    @property
    def http_status(self) -> int:
        """200 when ok, else 503 (Service Unavailable)."""
        return 200 if self.ok else 503

    def to_json(self) -> str:
        """The body as compact JSON: ``{"status":"ok","workers":2}``."""
        return json.dumps(dict(self.body), separators=(",", ":"))


def check_workers(
    app: Any,
    *,
    timeout: float = 3.0,
    min_workers: int = 1,
    queue: str | None = None,
    details: bool = False,
    cache_seconds: float = 1.0,
    coverage: bool = False,
) -> HealthReport:
    """Check that at least ``min_workers`` workers consume this app's queues (or ``queue`` if given).

    Returns as soon as enough workers have answered, so ``workers`` in the
    body is then at least ``min_workers`` rather than the size of the whole
    fleet. Statuses: ``ok``, ``no_workers`` (nobody answered within
    ``timeout``), ``too_few_workers``, ``down`` (broker unreachable).
    ``details=True`` adds the answering workers' host names as ``detail``.

    ``coverage=True`` also requires a live consumer for the queue of every
    beat entry and every monitored task (resolved as Celery routes them);
    otherwise the status is ``uncovered`` and ``uncovered`` lists each such
    queue with the entries and tasks sent there. It then waits out the
    timeout when a queue has no consumer.
    """
    timeout, minimum, _, cache_seconds = check_options(
        timeout=timeout, min_workers=min_workers, queue=queue, cache_seconds=cache_seconds
    )
    assert minimum is not None
    min_workers = minimum
    coverage = checks.boolean("coverage", coverage)
    key = ("workers", timeout, min_workers, queue, bool(details), coverage)
    return _state(app).get(
        key,
        cache_seconds,
        timeout,
        lambda: _check_workers(app, timeout, min_workers, queue, bool(details), coverage),
    )


def check_queue(
    app: Any,
    queue: str,
    *,
    threshold: int = 1000,
    timeout: float = 3.0,
    cache_seconds: float = 1.0,
) -> HealthReport:
    """Check that ``queue`` holds at most ``threshold`` ready messages.

    Statuses: ``ok``, ``backlog`` (depth above the threshold),
    ``unknown_queue`` (RabbitMQ has no such queue), ``down``.
    """
    if queue is None:
        raise ConfigurationError("queue", queue, "expected a non-empty queue name")
    timeout, _, limit, cache_seconds = check_options(
        timeout=timeout, queue=queue, threshold=threshold, cache_seconds=cache_seconds
    )
    assert limit is not None
    threshold = limit
    key = ("queue", timeout, queue, threshold)
    return _state(app).get(key, cache_seconds, timeout, lambda: _check_queue(app, queue, threshold, timeout))


def _check_workers(
    app: Any, timeout: float, min_workers: int, queue: str | None, details: bool, coverage: bool
) -> HealthReport:
    wanted = frozenset((queue,)) if queue is not None else own_queues(app)
    routes = schedule_routes(app) if coverage else []
    load_transport(app, for_write=True)
    deadline = time.monotonic() + timeout
    needed = frozenset(route.queue for route in routes if route.queue is not None)

    def enough(answered: Replies) -> bool:
        if len(consuming(answered, wanted)) < min_workers:
            return False
        return not needed or needed <= frozenset(consumers_by_queue(answered))

    try:
        with probe_connection(app, deadline, for_write=True) as conn:
            replies = broadcast_until(app, conn, "active_queues", deadline=deadline, enough=enough)
    except BrokerDown as exc:
        body: dict[str, Any] = {"queue": queue, "error": str(exc)}
        return HealthReport("down", _without_none(body))
    names = consuming(replies, wanted)
    gaps = Coverage(tuple(routes), consumers_by_queue(replies), tuple(sorted(replies))).uncovered()
    status: HealthStatus = "ok"
    if not names:
        status = "no_workers"
    elif len(names) < min_workers:
        status = "too_few_workers"
    elif gaps:
        status = "uncovered"
    body = {
        "workers": len(names),
        "detail": tuple(names) if details else None,
        "queue": queue,
        "uncovered": _uncovered_body(gaps) if gaps else None,
    }
    return HealthReport(status, _without_none(body))


def _uncovered_body(gaps: list[Route]) -> tuple[dict[str, Any], ...]:
    """``[{"queue": "reports", "entries": ["nightly"], "tasks": ["proj.export"]}, ...]`` by queue."""
    by_queue: dict[str | None, dict[str, Any]] = {}
    for route in gaps:
        item = by_queue.setdefault(route.queue, {"queue": route.queue, "entries": [], "tasks": []})
        item["entries" if route.kind == "entry" else "tasks"].append(route.name)
    return tuple(by_queue.values())


def _check_queue(app: Any, queue: str, threshold: int, timeout: float) -> HealthReport:
    load_transport(app, for_write=False)
    deadline = time.monotonic() + timeout
    try:
        with probe_connection(app, deadline, for_write=False) as conn:
            depth = queue_depth(conn, queue)
    except BrokerDown as exc:
        return HealthReport("down", {"queue": queue, "threshold": threshold, "error": str(exc)})
    if depth is None:
        return HealthReport("unknown_queue", {"queue": queue, "threshold": threshold})
    status: HealthStatus = "backlog" if depth > threshold else "ok"
    return HealthReport(status, {"queue": queue, "depth": depth, "threshold": threshold})


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def check_options(
    *,
    timeout: float,
    min_workers: int | None = None,
    queue: str | None = None,
    threshold: int | None = None,
    cache_seconds: float,
) -> tuple[float, int | None, int | None, float]:
    """Check probe options with the library's one set of checkers (`config.checks`)."""
    if queue is not None:
        checks.name("queue", queue, what="queue name")
    return (
        checks.seconds("timeout", timeout),
        None if min_workers is None else checks.integer("min_workers", min_workers, minimum=1),
        None if threshold is None else checks.integer("threshold", threshold, minimum=0),
        checks.seconds("cache_seconds", cache_seconds, positive=False),
    )


class _Flight:
    """One probe: in flight until ``done`` is set, then cached until ``expires``."""

    __slots__ = ("done", "expires", "report")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.report: HealthReport | None = None
        self.expires = math.inf


class _HealthState:
    """Per-app probe results: a short cache, and one broker round trip per burst.

    A caller that finds an identical probe in flight waits for its answer
    instead of broadcasting again; a finished answer is reused for
    ``cache_seconds``. Bounded: at most ``_CACHE_MAX_ENTRIES`` keys (probe
    paths carry user-chosen queue names).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[tuple[Any, ...], _Flight] = {}

    def get(
        self,
        key: tuple[Any, ...],
        cache_seconds: float,
        timeout: float,
        probe: Callable[[], HealthReport],
    ) -> HealthReport:
        if cache_seconds <= 0:
            return probe()
        with self._lock:
            flight = self._flights.get(key)
            owner = flight is None or (flight.done.is_set() and flight.expires <= time.monotonic())
            if owner:
                flight = self._flights[key] = _Flight()
                self._prune()
        assert flight is not None
        if not owner:
            # Wait for the identical probe in flight (it ends within its timeout).
            if flight.done.wait(timeout + 1.0) and flight.report is not None:
                return flight.report
            return probe()
        try:
            report = probe()
        except BaseException:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()
            raise
        flight.report = report
        flight.expires = time.monotonic() + cache_seconds
        flight.done.set()
        return report

    def _prune(self) -> None:
        if len(self._flights) <= _CACHE_MAX_ENTRIES:
            return
        now = time.monotonic()
        for key, flight in list(self._flights.items()):
            if flight.done.is_set() and flight.expires <= now:
                del self._flights[key]
        while len(self._flights) > _CACHE_MAX_ENTRIES:  # oldest first (insertion order)
            del self._flights[next(iter(self._flights))]


_CREATE = threading.Lock()


def _state(app: Any) -> _HealthState:
    """The app's probe cache, kept in the app's state (no module-level state)."""
    state = state_of(app)
    cache = state.health
    if not isinstance(cache, _HealthState):
        with _CREATE:
            cache = state.health
            if not isinstance(cache, _HealthState):
                cache = state.health = _HealthState()
    return cache
