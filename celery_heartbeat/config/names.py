"""Names the library reserves: its own tasks and the task-name prefixes it never monitors by glob."""

from __future__ import annotations

PING_TASK = "celery_heartbeat.ping"
BEAT_TASK = "celery_heartbeat.beat_liveness"

#: Celery's built-ins and this library's own tasks: they already ping their own monitor (canvas
#: pings, beat liveness), so a broad glob such as "*" never covers them, and beat entries that
#: send them are not auto-monitored.
INTERNAL_PREFIXES = ("celery.", "celery_heartbeat.")


def is_internal(task_name: str) -> bool:
    return task_name.startswith(INTERNAL_PREFIXES)
