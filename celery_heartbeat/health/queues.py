"""Which queues an app owns, and which workers consume them, from ``active_queues`` replies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from celery_heartbeat.health.broker import Replies


def own_queues(app: Any) -> frozenset[str]:
    """The queues this app's workers consume unless told otherwise: ``task_default_queue`` and ``task_queues``."""
    conf = app.conf
    names = {str(conf.task_default_queue)}
    declared = conf.task_queues or ()
    if isinstance(declared, Mapping):  # the old {name: options} form
        names.update(str(name) for name in declared)
    else:
        names.update(str(getattr(queue, "name", queue)) for queue in declared)
    return frozenset(name for name in names if name)


def queues_of(reply: Any) -> frozenset[str]:
    """The queue names in one worker's ``active_queues`` reply (a list of queue dicts)."""
    queues = reply if isinstance(reply, list) else []
    return frozenset(str(q["name"]) for q in queues if isinstance(q, Mapping) and q.get("name"))


def consuming(replies: Replies, queues: Iterable[str]) -> list[str]:
    """Sorted names of the workers that consume at least one of ``queues``."""
    wanted = frozenset(queues)
    return sorted(name for name, reply in replies.items() if queues_of(reply) & wanted)


def consumers_by_queue(replies: Replies) -> dict[str, list[str]]:
    """Every queue some worker consumes -> the sorted names of those workers."""
    out: dict[str, list[str]] = {}
    for name, reply in replies.items():
        for queue in queues_of(reply):
            out.setdefault(queue, []).append(name)
    return {queue: sorted(names) for queue, names in out.items()}
