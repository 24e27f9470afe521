"""Live and ready, decided from one state and the time now: pure functions, no I/O.

Worker, live (restart it when not):
- the state was written within `max_age`: the process and its writer thread run (SIGSTOP stops both);
- while it connects or reconnects to the broker it is live: the loop sits in Celery's reconnect
  backoff by design, and a restart cannot fix a broker;
- otherwise its event loop progressed within `max_age`, or, when the loop is stalled, a task that
  runs in the worker's own process (solo, gevent, eventlet) is within its hard time limit plus
  `max_age`: busy, not dead. A task with no time limit is busy for as long as it runs: nothing
  tells a long task from a stuck one, so set `task_time_limit` to have stuck ones restarted;
- and not every pool slot is held by a task past its time limit plus `max_age` (the pool failed to
  enforce its limit, so the worker can never take another task).

Worker, ready: live, started, connected to the broker and consuming at least one queue.

Beat, live: the state is fresh and the scheduler loop ran no later than `max_age` after the time it
meant to wake (a beat sleeping until a far-off entry is live; a frozen or stuck one is not).
"""

from __future__ import annotations

from typing import NamedTuple

from celery_heartbeat.probe.state import BeatState, TaskState, WorkerState

DEFAULT_MAX_AGE = 20.0


class Verdict(NamedTuple):
    live: bool
    ready: bool
    reason: str  # why not live, else why not ready, else what it is doing


def _s(seconds: float) -> str:
    return f"{seconds:.1f}s"


def _task(t: TaskState, now: float) -> str:
    limit = "no time limit" if t.time_limit is None else f"time limit {t.time_limit:g}s"
    return f"task {t.name}[{t.id}] running {_s(now - t.started)} ({limit})"


def _overdue(t: TaskState, now: float, max_age: float) -> bool:
    return t.time_limit is not None and now > t.started + t.time_limit + max_age


def worker_liveness(s: WorkerState, now: float, max_age: float) -> tuple[bool, str]:
    age = now - s.written
    if age > max_age:
        return False, f"state not written for {_s(age)} (process frozen, stopped or killed)"
    if s.phase == "starting":
        return True, f"starting, connecting to the broker for {_s(now - s.started)}"
    if not s.broker_connected:
        if s.phase == "stopping":
            return True, "stopping"
        return True, f"broker connection lost {_s(now - s.broker_changed)} ago; reconnecting"
    tick = s.loop_tick if s.loop_tick is not None else s.broker_changed
    lag = now - tick
    if lag > max_age:
        inline = [t for t in s.tasks if t.pid == s.identity.pid]
        busy = [t for t in inline if not _overdue(t, now, max_age)]
        if busy:
            return True, f"busy: {_task(busy[0], now)}"
        if inline:
            return False, f"event loop stuck for {_s(lag)} behind {_task(inline[0], now)}, past its limit"
        return False, f"event loop made no progress for {_s(lag)}"
    stuck = [t for t in s.tasks if _overdue(t, now, max_age)]
    if s.pool.concurrency > 0 and len(stuck) >= s.pool.concurrency:
        return False, f"all {s.pool.concurrency} pool slot(s) stuck past their time limit: {_task(stuck[0], now)}"
    doing = f"{len(s.tasks)} task(s) running" if s.tasks else "idle"
    return True, f"event loop ran {_s(lag)} ago, {doing}"


def worker_verdict(s: WorkerState, now: float, max_age: float = DEFAULT_MAX_AGE) -> Verdict:
    live, reason = worker_liveness(s, now, max_age)
    if not live:
        return Verdict(False, False, reason)
    if s.phase != "running":
        return Verdict(True, False, reason)
    if not s.broker_connected:
        return Verdict(True, False, reason)
    if not s.queues:
        return Verdict(True, False, "consuming no queue")
    return Verdict(True, True, f"{reason}; consuming {', '.join(s.queues)}")


def beat_verdict(s: BeatState, now: float, max_age: float = DEFAULT_MAX_AGE) -> Verdict:
    age = now - s.written
    if age > max_age:
        return Verdict(False, False, f"state not written for {_s(age)} (process frozen, stopped or killed)")
    last = s.tick if s.tick is not None else s.started
    due = max(last, s.next_wake if s.next_wake is not None else last)
    late = now - due
    if late > max_age:
        return Verdict(False, False, f"scheduler loop last ran {_s(now - last)} ago and is {_s(late)} late")
    if s.phase == "stopping":
        return Verdict(True, False, "stopping")
    wake = f"; next wake in {_s(due - now)}" if due > now else ""
    return Verdict(True, True, f"scheduler loop ran {_s(now - last)} ago{wake}")
