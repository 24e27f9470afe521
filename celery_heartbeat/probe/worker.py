"""Worker side: what the state file says, gathered without touching a task's thread.

- A worker bootstep starts the writer thread (and the HTTP server) once the pool
  exists, marks "stopping" on shutdown, and the `worker_shutdown` signal removes
  the file after the pool has finished its tasks.
- A consumer bootstep's `start()` runs each time the consumer has connected and
  started consuming (again after every reconnect): it marks the broker connected
  and registers a repeating timer on the worker's event loop whose only job is
  to note the time. Celery 5.7 cancels a connection's timer entries when the
  connection is lost, so the entry is registered here on every start and
  cancelled in `stop()` (5.3 cancels nothing). `stop()` (connection lost, or
  shutdown) marks the broker disconnected.
- Running tasks are read by the writer thread from `celery.worker.state.active_requests`
  (the main process's view, pool-agnostic, with start time and time limit).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any, Callable, Protocol, TypeVar

from celery import bootsteps
from celery.worker import state as worker_state

from celery_heartbeat.probe import state
from celery_heartbeat.probe.verdict import worker_verdict
from celery_heartbeat.probe.writer import StateWriter

logger = logging.getLogger("celery_heartbeat")

TICK = 1.0
F = TypeVar("F", bound=Callable[..., None])


def guarded(method: F) -> F:
    """A probe problem is logged, never raised into the worker's start or stop (the probe then fails loudly)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            logger.exception(
                "celery-heartbeat: probe %s failed (the worker runs on; its probes will say so)", method.__name__
            )

    return wrapper  # type: ignore[return-value]


class WiringView(Protocol):
    """What the bootsteps need from the app's probe wiring (celery_heartbeat.probe.wiring)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def directory(self) -> str | None: ...

    worker: tuple[WorkerRecorder, StateWriter[state.WorkerState]] | None

    def start_server(self, writer: StateWriter[state.WorkerState], judge: Callable[..., Any]) -> None: ...


class WorkerRecorder:
    """The facts of one worker process; written by bootsteps and the loop's timer, read by the writer thread."""

    def __init__(self, node: str, pool: Any) -> None:
        now = time.monotonic()
        self.identity = state.identity()
        self.node = node
        self.pool = pool
        self.started = now
        self.phase = "starting"
        self.connected = False
        self.changed = now
        self.loop = "none"
        self.loop_tick: float | None = None
        self.consumer: Any = None
        self.changed_hook: Callable[[], None] = lambda: None  # the writer's nudge: write a change at once

    # -- from the worker's own thread (bootsteps, the loop's timer): single assignments only --

    def tick(self) -> None:
        self.loop_tick = time.monotonic()

    def on_connected(self, consumer: Any) -> None:
        self.consumer = consumer
        self.loop = "hub" if getattr(consumer, "hub", None) is not None else "timer"
        self.loop_tick = self.changed = time.monotonic()
        self.connected = True
        if self.phase == "starting":
            self.phase = "running"
        self.changed_hook()

    def on_disconnected(self) -> None:
        if self.connected:
            self.connected = False
            self.changed = time.monotonic()
            self.changed_hook()

    # -- from the writer thread --

    def snapshot(self) -> state.WorkerState:
        now = time.monotonic()
        return state.WorkerState(
            identity=self.identity,
            node=self.node,
            written=now,
            written_at=state.wall_time(),
            started=self.started,
            phase=self.phase,
            broker_connected=self.connected,
            broker_changed=self.changed,
            loop=self.loop,
            loop_tick=self.loop_tick,
            queues=self._queues() if self.connected else [],
            pool=self._pool(),
            tasks=_running_tasks(now),
        )

    def _queues(self) -> list[str]:
        task_consumer = getattr(self.consumer, "task_consumer", None)
        if task_consumer is None:
            return []
        return [q.name for q in list(task_consumer.queues) if task_consumer.consuming_from(q)]

    def _pool(self) -> state.PoolState:
        impl = type(self.pool).__module__.rpartition(".")[2]
        concurrency = int(getattr(self.pool, "limit", 0) or 0)
        processes = getattr(getattr(self.pool, "_pool", None), "_pool", None)  # billiard's process list
        pids = [p.pid for p in list(processes) if p.pid] if isinstance(processes, list) else [self.identity.pid]
        return state.PoolState(impl, concurrency, pids, sum(1 for pid in pids if _alive(pid)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _running_tasks(now: float) -> list[state.TaskState]:
    for _ in range(5):
        try:
            requests = list(worker_state.active_requests)  # a WeakSet the main thread changes
            break
        except RuntimeError:  # changed size during iteration: read again
            continue
    else:
        return []
    wall = time.time()
    tasks = []
    for r in requests:
        started = getattr(r, "time_start", None)
        if not started:
            continue  # accepted by the pool a moment ago
        limit = (getattr(r, "time_limits", None) or (None, None))[0] or getattr(r.task, "time_limit", None)
        tasks.append(
            state.TaskState(
                id=str(r.id),
                name=str(r.name),
                started=now - (wall - float(started)),
                time_limit=float(limit) if limit else None,
                pid=getattr(r, "worker_pid", None),
            )
        )
    return tasks


def _enabled(wiring: WiringView) -> bool:
    try:
        return wiring.enabled
    except Exception:  # a bad setting found only now: logged, and the worker runs without probes
        logger.exception("celery-heartbeat: probes are off: cannot read their settings")
        return False


class WorkerProbeStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Starts the writer thread and HTTP server once the pool exists; the consumer step reports the rest."""

    requires = ("celery.worker.components:Pool",)
    wiring: WiringView  # set on the per-install subclass

    def include_if(self, w: Any) -> bool:
        return _enabled(self.wiring)

    @guarded
    def start(self, w: Any) -> None:
        wiring = self.wiring
        recorder = WorkerRecorder(w.hostname, w.pool)
        path = None if wiring.directory is None else state.worker_path(wiring.directory, w.hostname)
        writer = StateWriter(path, recorder.snapshot)
        recorder.changed_hook = writer.nudge
        wiring.worker = (recorder, writer)
        writer.start()
        wiring.start_server(writer, worker_verdict)

    @guarded
    def stop(self, w: Any) -> None:
        if self.wiring.worker is not None:
            recorder, writer = self.wiring.worker
            recorder.phase = "stopping"  # the pool may still finish tasks: live, not ready
            writer.nudge()

    terminate = stop


class ConsumerProbeStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs after the task consumer started: connected and consuming; a timer on the loop shows progress."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    wiring: WiringView

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self._entry: Any = None

    def include_if(self, c: Any) -> bool:
        return _enabled(self.wiring)

    @guarded
    def start(self, c: Any) -> None:
        if self.wiring.worker is None:
            return
        recorder = self.wiring.worker[0]
        recorder.on_connected(c)
        self._cancel(c)
        if c.timer is not None:
            self._entry = c.timer.call_repeatedly(TICK, recorder.tick)

    @guarded
    def stop(self, c: Any) -> None:
        if self.wiring.worker is not None:
            self.wiring.worker[0].on_disconnected()
        self._cancel(c)

    shutdown = stop

    def _cancel(self, c: Any) -> None:
        entry, self._entry = self._entry, None
        if entry is not None and c.timer is not None:
            c.timer.cancel(entry)  # through the timer: eventlet's relies on that
