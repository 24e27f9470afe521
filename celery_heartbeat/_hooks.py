"""Celery signal handlers: resolve the monitor (cached), decide, enqueue, return.

Every handler body is guarded: an extension must never fail or slow the host
task. Names and ids come from the signal arguments: a hard time limit or a lost
worker fires task_failure in the parent process, where there is no request.

Two groups of receivers, both owned by the app's `AppState`: the task and
worker-shutdown hooks (connected only while the library is enabled), and the
lifecycle hooks (always), which re-read the configuration when the worker or
beat starts: what counts is the configuration then, not at `install()`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from celery import signals
from celery.utils.dispatch import Signal

from celery_heartbeat._state import AppState, peek, real_app
from celery_heartbeat._wiring import Wiring
from celery_heartbeat.beat.liveness import on_beat_start
from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.names import is_internal
from celery_heartbeat.config.providers import Kind
from celery_heartbeat.config.settings import Settings
from celery_heartbeat.delivery.handover import Handover, Route, RunEvent
from celery_heartbeat.delivery.ping import OutgoingPing
from celery_heartbeat.sync.engine import sync_in_background

logger = logging.getLogger("celery_heartbeat")

BILLIARD_EXIT_PAUSE = 1.0
"""Seconds a prefork child sleeps after worker_process_shutdown before os._exit (billiard)."""

TASKS = "tasks"
STARTS = "starts"  # task_prerun alone: only runs with start pings need it
LIFECYCLE = "lifecycle"


def wants_start(settings: Settings, monitor: Monitor) -> bool:
    """Whether a run of this monitor sends a start ping (then its coalescing is decided at start)."""
    wants = settings.send_start if monitor.start is None else monitor.start
    return wants and monitor.supports("start")


class Hooks:
    """The signal receivers of one installed app."""

    def __init__(self, state: AppState, wiring: Wiring, confirm: Callable[[str], None]) -> None:
        self.state = state
        #: Swapped whole by the handle when the settings change; handlers read it once per call.
        self.wiring = wiring
        #: Re-reads the configuration once (worker start, beat start or the first task).
        self.confirm = confirm
        self.confirmed = False
        self._shutdown_started: float | None = None
        self._status: str | None = None
        self._errors_logged: set[str] = set()
        self._runs_worker = False  # this process is a worker of this app (worker_init)
        #: Prefork only: pool processes hand run events to the main process (made before the first fork).
        self.handover: Handover | None = None

    # -- wiring ---------------------------------------------------------------------------

    def connect_lifecycle(self) -> None:
        pairs: list[tuple[Signal, Callable[..., None]]] = [
            (signals.worker_init, self.on_worker_init),
            (signals.worker_ready, self.on_worker_ready),
            (signals.beat_init, self.on_beat_init),
            (signals.beat_embedded_init, self.on_beat_init),
        ]
        for signal, receiver in pairs:
            self.state.connect(LIFECYCLE, signal, receiver)

    def connect_tasks(self) -> None:
        self.state.connect(STARTS, signals.task_prerun, self.on_prerun)
        pairs: list[tuple[Signal, Callable[..., None]]] = [
            (signals.task_success, self.on_success),
            (signals.task_failure, self.on_failure),
            (signals.task_revoked, self.on_revoked),
            (signals.worker_before_create_process, self.on_before_create_process),
            (signals.worker_shutting_down, self.on_shutting_down),
            (signals.worker_process_shutdown, self.on_process_shutdown),
            (signals.worker_shutdown, self.on_worker_shutdown),
        ]
        for signal, receiver in pairs:
            self.state.connect(TASKS, signal, receiver)

    def disconnect_tasks(self) -> None:
        self.state.disconnect(TASKS)
        self.state.disconnect(STARTS)

    def trim_starts(self, wiring: Wiring) -> None:
        """Leave task_prerun unconnected when no monitor of this worker's tasks sends start pings.

        Why: Celery skips a signal nobody receives, and every task pays for one that somebody does
        (the dispatch and our handler are about half of what the library costs a task). Called once
        every task is registered and resolved (worker start); a task found later whose monitor does
        want start pings connects it again (`on_success`), so only its first run lacks a start ping.
        """
        if not (wiring.settings.send_start or wiring.registry.any_start()):
            self.state.disconnect(STARTS)

    def _guard_error(self, where: str) -> None:
        if where not in self._errors_logged:
            self._errors_logged.add(where)
            logger.exception("celery-heartbeat: error in %s (tasks are unaffected; logged once)", where)

    def _mine(self, app: Any) -> bool:
        return app is self.state.app or (app is not None and real_app(app) is self.state.app)

    def _current(self) -> Wiring:
        if not self.confirmed:
            self.confirm("first task")
        return self.wiring

    # -- task signals (hot path) ----------------------------------------------------------

    def on_prerun(
        self,
        sender: Any = None,
        task_id: str | None = None,
        task: Any = None,
        args: Any = None,
        kwargs: Any = None,
        **_: Any,
    ) -> None:
        try:
            if task is None or task_id is None or not self._mine(task.app):
                return
            wiring = self._current()
            monitor = wiring.monitor_for_run(task.name, args, kwargs)
            if monitor is None:
                return
            self._emit(wiring, "start", monitor, task_id, retries=task.request.retries or 0)
        except Exception:
            self._guard_error("task_prerun")

    def on_success(self, sender: Any = None, **_: Any) -> None:
        try:
            if sender is None or not self._mine(sender.app):
                return
            wiring = self._current()
            request = sender.request
            monitor = wiring.monitor_for_run(sender.name, request.args, request.kwargs)
            if monitor is None:
                return
            if monitor.start and not self.state.connected(STARTS):  # see trim_starts
                self.state.connect(STARTS, signals.task_prerun, self.on_prerun)
            task_id = request.id
            if task_id is None:
                return
            self._emit(wiring, "success", monitor, task_id)
        except Exception:
            self._guard_error("task_success")

    def _failed(self, task: Any, task_id: str | None, detail: str, args: Any = None, kwargs: Any = None) -> None:
        if task is None or task_id is None or not self._mine(task.app):
            return
        wiring = self._current()
        monitor = wiring.monitor_for_run(task.name, args, kwargs)
        if monitor is None:
            return
        self._emit(wiring, "failure", monitor, task_id, detail=detail)

    # -- decide and send (here, or in the main process for prefork pool processes) ---------

    def _emit(
        self, wiring: Wiring, kind: Kind, monitor: Monitor, run_id: str, retries: int = 0, detail: str | None = None
    ) -> None:
        if kind == "start" and not wants_start(wiring.settings, monitor):
            return  # nothing to send: the run's coalescing is decided at its finish
        owed = False
        handover = self.handover
        if handover is not None and handover.active:  # only in a prefork worker
            route = handover.offer(RunEvent(kind, monitor, run_id, retries, detail), wiring.settings.coalesce_seconds)
            if route is Route.HANDED:
                return
            owed = route is Route.OWED
        self._decide(wiring, kind, monitor, run_id, retries, detail, owed, time.monotonic())

    def apply(self, event: RunEvent, owed: bool = False) -> None:
        """Decide and send an event handed over by a pool process (the main process's reader thread).

        `owed`: a finish whose start went out from another process: it pings whatever this
        process's coalescing says.
        """
        e = event
        self._decide(self.wiring, e.kind, e.monitor, e.run_id, e.retries, e.detail, owed, e.created)

    def _decide(
        self,
        wiring: Wiring,
        kind: Kind,
        monitor: Monitor,
        run_id: str,
        retries: int,
        detail: str | None,
        owed: bool,
        created: float,
    ) -> None:
        """Whether a run event pings (coalescing, once per run); submit its ping."""
        settings, runs = wiring.settings, wiring.delivery.runs
        if kind == "start":
            if wants_start(settings, monitor) and runs.start(monitor.url, run_id, retries, created) and retries == 0:
                wiring.delivery.sender.submit(OutgoingPing(monitor, "start", run_id, created=created))
        elif kind == "success":
            if owed or runs.success(monitor.url, run_id, created):
                wiring.delivery.sender.submit(OutgoingPing(monitor, "success", run_id, created=created))
        elif runs.failure(monitor.url, run_id, created):  # once per run, also when owed
            wants = settings.send_failure if monitor.failure is None else monitor.failure
            if wants and monitor.supports("failure"):
                wiring.delivery.sender.submit(OutgoingPing(monitor, "failure", run_id, detail=detail, created=created))

    def on_failure(
        self,
        sender: Any = None,
        task_id: str | None = None,
        exception: BaseException | None = None,
        args: Any = None,
        kwargs: Any = None,
        **_: Any,
    ) -> None:
        try:
            detail = type(exception).__name__ if exception is not None else "failed"
            self._failed(sender, task_id, detail, args, kwargs)
        except Exception:
            self._guard_error("task_failure")

    def on_revoked(
        self,
        sender: Any = None,
        request: Any = None,
        terminated: bool = False,
        expired: bool = False,
        **_: Any,
    ) -> None:
        # Only a running task that was terminated failed; an expired message did not run by design.
        try:
            if not terminated or expired or request is None:
                return
            args, kwargs = getattr(request, "args", None), getattr(request, "kwargs", None)
            self._failed(sender, getattr(request, "id", None), "Revoked", args, kwargs)
        except Exception:
            self._guard_error("task_revoked")

    # -- worker and beat lifecycle --------------------------------------------------------

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        # The worker's main process, before the pool forks; the configuration and the task
        # modules are loaded by now. Children inherit everything built here.
        try:
            if not self._mine(getattr(sender, "app", None)):
                return
            self._runs_worker = True
            self.confirm("worker start")
            wiring = self.wiring
            self._status = "disabled (heartbeat_enabled is False): this worker sends no pings"
            if wiring.settings.enabled:
                mapped = self._check_tasks(wiring)
                self.trim_starts(wiring)
                auto = wiring.auto.warm() if wiring.auto.active else 0  # so no child reads the database
                liveness = self.state.liveness
                self._status = "active: {} task{} with a monitor, {} beat entr{} monitored automatically, {}".format(
                    mapped,
                    "" if mapped == 1 else "s",
                    auto,
                    "y" if auto == 1 else "ies",
                    f"beat liveness every {liveness.every:g}s" if liveness is not None else "no beat liveness",
                )
            if logger.isEnabledFor(logging.INFO):  # `celery worker` sets its log level up later: then at ready
                self._announce()
        except Exception:
            self._guard_error("worker_init")

    def on_before_create_process(self, **_: Any) -> None:
        # Prefork only, in the main process, before each fork: children inherit the channel.
        try:
            if self._runs_worker:
                if self.handover is None:
                    self.handover = Handover(self.apply)
                self.handover.open()
        except Exception:
            self._guard_error("worker_before_create_process")

    def drain(self, timeout: float) -> bool:
        """Main process: wait until what pool processes handed over was applied; True when done."""
        return True if self.handover is None else self.handover.drain(timeout)

    def close_handover(self, timeout: float) -> None:
        """Main process: apply what pool processes handed over, then decide everything here."""
        if self.handover is not None:
            self.handover.close(timeout)

    def on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        try:
            if self._mine(getattr(sender, "app", None)):
                self._announce()
        except Exception:
            self._guard_error("worker_ready")

    def _announce(self) -> None:
        """One INFO line per worker saying whether the library is active: never a silent no-op."""
        if self._status is not None and "announced" not in self.state.done:
            self.state.done.add("announced")
            logger.info("celery-heartbeat: %s", self._status)

    def _check_tasks(self, wiring: Wiring) -> int:
        """Resolve every task now (validates per-task options, warms the cache); how many have a monitor."""
        names = [name for name in self.state.app.tasks if not is_internal(name)]
        mapped = 0
        for name in names:
            try:
                mapped += wiring.registry.resolve(name) is not None
            except Exception as exc:
                logger.error("celery-heartbeat: task %s: %s (it will send no pings)", name, exc)
        unmatched = wiring.registry.unmatched(names)
        if unmatched:
            logger.warning(
                "celery-heartbeat: heartbeat_urls entries match no registered task (typo?): %s", ", ".join(unmatched)
            )
        return mapped

    def on_beat_init(self, sender: Any = None, **_: Any) -> None:
        # Both beat_init and beat_embedded_init fire under `celery worker -B`: everything here runs once.
        try:
            if peek(getattr(sender, "app", None)) is not self.state or "beat start" in self.state.done:
                return
            self.state.done.add("beat start")
            self.confirm("beat start")
            if not self.wiring.settings.enabled:
                return
            on_beat_start(self.state, sender)
            if self.wiring.settings.sync_on_beat_start:
                # Push schedules to the provider on a thread; beat never waits.
                sync_in_background(self.state.app)
        except Exception:
            self._guard_error("beat_init")

    def on_shutting_down(self, **_: Any) -> None:
        # Sent from the main process's SIGTERM handler: start delivering now, in parallel with
        # the children's flush, without waiting (expedite never blocks on a lock).
        try:
            self._shutdown_started = time.monotonic()
            self.wiring.delivery.expedite(self.wiring.settings.shutdown_timeout)
        except Exception:
            self._guard_error("worker_shutting_down")

    def on_process_shutdown(self, **_: Any) -> None:
        # Prefork children leave through os._exit: atexit never runs there. Billiard then
        # sleeps BILLIARD_EXIT_PAUSE before exiting, while the sender thread keeps delivering.
        try:
            if self.handover is not None:
                self.handover.release_held()  # successes held inside this process's window
            timeout = self.wiring.settings.shutdown_timeout
            self.wiring.delivery.flush(max(0.0, timeout - BILLIARD_EXIT_PAUSE))
        except Exception:
            self._guard_error("worker_process_shutdown")

    def on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        try:
            if not self._mine(getattr(sender, "app", self.state.app)):
                return  # another app's worker in this process
            budget = self.wiring.settings.shutdown_timeout
            if self._shutdown_started is not None:
                # One budget for the whole shutdown: children and this process flushed in parallel.
                budget = max(0.0, budget - (time.monotonic() - self._shutdown_started))
                self._shutdown_started = None
            end = time.monotonic() + budget
            self.close_handover(budget)  # the pool processes are gone: apply what they handed over
            if not self.wiring.delivery.flush(max(0.0, end - time.monotonic())):
                stats = self.wiring.delivery.stats()
                logger.warning("celery-heartbeat: %d ping(s) not delivered at shutdown", stats["pending"])
        except Exception:
            self._guard_error("worker_shutdown")
