"""Schedule coverage: does a live worker consume the queue each periodic (or monitored) task is sent to?

A beat entry routed to a queue that no worker consumes never runs, and
nothing errors: beat dispatches into the void. The queue is resolved the way
Celery does when beat sends the entry (the entry's own ``queue`` option, then
the task's ``queue`` attribute, then ``task_routes``, then
``task_default_queue``), and compared with the queues the live workers report
through ``active_queues``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from celery_heartbeat._state import registry_of
from celery_heartbeat.beat.entries import BeatEntry, read_entries
from celery_heartbeat.beat.liveness import ENTRY_NAME, liveness_of
from celery_heartbeat.config.names import BEAT_TASK, is_internal
from celery_heartbeat.health.broker import Replies, broadcast_until, load_transport, probe_connection
from celery_heartbeat.health.queues import consumers_by_queue

__all__ = ["Coverage", "Route", "coverage_of", "route_entry", "route_task", "schedule_routes"]


@dataclass(frozen=True)
class Route:
    """Where one beat entry (``kind="entry"``) or monitored task (``kind="task"``) is sent."""

    kind: Literal["entry", "task"]
    name: str
    task: str
    queue: str | None
    problem: str = ""

    def label(self) -> str:
        """``beat entry 'nightly' (task proj.report)`` or ``task proj.export``."""
        if self.kind == "entry":
            return f"beat entry {self.name!r} (task {self.task})"
        return f"task {self.task}"


@dataclass(frozen=True)
class Coverage:
    """Each route with the workers consuming its queue, as the live workers reported them."""

    routes: tuple[Route, ...]
    consumers: Mapping[str, list[str]]
    workers: tuple[str, ...]

    def uncovered(self) -> list[Route]:
        """Routes whose queue no live worker consumes (or whose queue could not be resolved)."""
        return [route for route in self.routes if route.queue is None or not self.consumers.get(route.queue)]

    def by_queue(self) -> dict[str, list[str]]:
        """Uncovered queue -> the entries and tasks sent there (labels), in route order."""
        out: dict[str, list[str]] = {}
        for route in self.uncovered():
            if route.queue is not None:
                out.setdefault(route.queue, []).append(route.label())
        return out


def _route(app: Any, task_name: str, options: Mapping[str, Any], args: Any, kwargs: Any) -> str:
    merged: dict[str, Any] = {}
    task = app.tasks.get(task_name)
    queue = getattr(task, "queue", None) if task is not None else None
    if queue:
        merged["queue"] = queue
    merged.update((key, value) for key, value in options.items() if value is not None)
    routed = app.amqp.router.route(merged, task_name, tuple(args or ()), dict(kwargs or {}))
    target = routed.get("queue")
    name = getattr(target, "name", target)
    if not name:
        raise ValueError("the router gave no queue")
    return str(name)


def route_entry(app: Any, entry: BeatEntry) -> Route:
    """The queue beat sends ``entry`` to: its ``queue`` option, the task's, ``task_routes``, the default."""
    try:
        queue: str | None = _route(app, entry.task, entry.options, entry.args, entry.kwargs)
        problem = ""
    except Exception as exc:  # a router that fails, or a queue missing from task_queues
        queue, problem = None, f"cannot resolve its queue ({type(exc).__name__}: {exc})"
    return Route("entry", entry.name, entry.task, queue, problem)


def route_task(app: Any, task_name: str) -> Route:
    """The queue a monitored task is sent to when called without options (``task_routes`` or the default)."""
    try:
        queue: str | None = _route(app, task_name, {}, (), {})
        problem = ""
    except Exception as exc:
        queue, problem = None, f"cannot resolve its queue ({type(exc).__name__}: {exc})"
    return Route("task", task_name, task_name, queue, problem)


def coverage_of(app: Any, routes: Iterable[Route], *, timeout: float = 3.0) -> Coverage:
    """Ask the live workers which queues they consume; stop early once every route's queue is covered.

    Raises :class:`~celery_heartbeat._exceptions.BrokerDown` when the broker
    cannot be reached within ``timeout``.
    """
    routes = tuple(routes)
    needed = frozenset(route.queue for route in routes if route.queue is not None)
    load_transport(app, for_write=True)
    deadline = time.monotonic() + timeout

    def enough(replies: Replies) -> bool:
        # With nothing to cover, one answer is enough to tell the broker and a worker are there.
        consumed = consumers_by_queue(replies)
        return bool(replies) and all(queue in consumed for queue in needed)

    with probe_connection(app, deadline, for_write=True) as conn:
        replies = broadcast_until(app, conn, "active_queues", deadline=deadline, enough=enough)
    return Coverage(routes, consumers_by_queue(replies), tuple(sorted(replies)))


def monitored_tasks(app: Any) -> list[str]:
    """The app's registered tasks that have a monitor (explicit, task option or glob), sorted."""
    registry = registry_of(app)
    return [name for name in sorted(app.tasks) if not is_internal(name) and registry.resolve(name) is not None]


def schedule_routes(app: Any) -> list[Route]:
    """Where every beat entry (as the configured scheduler has them, beat liveness too) and monitored task goes."""
    entries = list(read_entries(app).entries)
    liveness = liveness_of(app)
    if liveness is not None:  # re-applied when beat starts, whatever beat_schedule says now
        spec = liveness.entry()
        entries.append(BeatEntry(ENTRY_NAME, BEAT_TASK, (), {}, spec["schedule"], None, options=spec["options"]))
    routes = [route_entry(app, entry) for entry in entries]
    return routes + [route_task(app, name) for name in monitored_tasks(app)]
