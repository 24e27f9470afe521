"""Celery signal handlers: resolve the monitor (cached), decide, enqueue, return.

Every handler body is guarded: an extension must never fail or slow the host
task. Names and ids come from the signal arguments: a hard time limit or a lost
worker fires task_failure in the parent process, where there is no request.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from celery import signals
from celery.utils.dispatch import Signal

from celery_heartbeat._ping import Ping

if TYPE_CHECKING:
    from celery_heartbeat._heartbeat import Heartbeat

logger = logging.getLogger("celery_heartbeat")

BILLIARD_EXIT_PAUSE = 1.0
"""Seconds a prefork child sleeps after worker_process_shutdown before os._exit (billiard)."""


class Hooks:
    """The signal receivers of one installed app."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self.hb = heartbeat
        self._connected: list[tuple[Signal, str]] = []
        self._shutdown_started: float | None = None
        self._errors_logged: set[str] = set()

    # -- wiring ---------------------------------------------------------------------------

    def connect(self) -> None:
        pairs: list[tuple[Signal, Callable[..., None]]] = [
            (signals.task_prerun, self.on_prerun),
            (signals.task_success, self.on_success),
            (signals.task_failure, self.on_failure),
            (signals.task_revoked, self.on_revoked),
            (signals.worker_ready, self.on_worker_ready),
            (signals.worker_process_init, self.on_process_init),
            (signals.worker_shutting_down, self.on_shutting_down),
            (signals.worker_process_shutdown, self.on_process_shutdown),
            (signals.worker_shutdown, self.on_worker_shutdown),
            (signals.beat_init, self.on_beat_init),
            (signals.beat_embedded_init, self.on_beat_init),
        ]
        for signal, receiver in pairs:
            uid = f"celery_heartbeat:{id(self.hb.app)}:{signal.name}"
            signal.connect(receiver, weak=False, dispatch_uid=uid)
            self._connected.append((signal, uid))

    def disconnect(self) -> None:
        for signal, uid in self._connected:
            signal.disconnect(dispatch_uid=uid)
        self._connected.clear()

    def _guard_error(self, where: str) -> None:
        if where not in self._errors_logged:
            self._errors_logged.add(where)
            logger.exception("celery-heartbeat: error in %s (tasks are unaffected; logged once)", where)

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
            if task is None or task_id is None or task.app is not self.hb.app:
                return
            monitor = self.hb.monitor_for_run(task.name, args, kwargs)
            if monitor is None:
                return
            retries = task.request.retries or 0
            admitted = self.hb.runs.start(monitor.url, task_id, retries)
            wants = self.hb.settings.send_start if monitor.start is None else monitor.start
            if admitted and wants and retries == 0 and monitor.supports("start"):
                self.hb.sender.submit(Ping(monitor, "start", task_id))
        except Exception:
            self._guard_error("task_prerun")

    def on_success(self, sender: Any = None, **_: Any) -> None:
        try:
            if sender is None or sender.app is not self.hb.app:
                return
            request = sender.request
            monitor = self.hb.monitor_for_run(sender.name, request.args, request.kwargs)
            if monitor is None:
                return
            task_id = request.id
            if task_id is None:
                return
            if self.hb.runs.success(monitor.url, task_id):
                self.hb.sender.submit(Ping(monitor, "success", task_id))
        except Exception:
            self._guard_error("task_success")

    def _failed(self, task: Any, task_id: str | None, detail: str, args: Any = None, kwargs: Any = None) -> None:
        if task is None or task_id is None or task.app is not self.hb.app:
            return
        monitor = self.hb.monitor_for_run(task.name, args, kwargs)
        if monitor is None:
            return
        if not self.hb.runs.failure(monitor.url, task_id):
            return
        wants = self.hb.settings.send_failure if monitor.failure is None else monitor.failure
        if wants and monitor.supports("failure"):
            self.hb.sender.submit(Ping(monitor, "failure", task_id, detail=detail))

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

    # -- worker lifecycle -----------------------------------------------------------------

    def on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        try:
            app = self.hb.app
            names = [name for name in app.tasks if not name.startswith("celery.")]
            for name in names:  # validates per-task options now, and warms the cache
                try:
                    self.hb.registry.resolve(name)
                except Exception as exc:
                    logger.error("celery-heartbeat: task %s: %s (it will send no pings)", name, exc)
            unmatched = self.hb.registry.unmatched(names)
            if unmatched:
                logger.warning(
                    "celery-heartbeat: heartbeat_urls entries match no registered task (typo?): %s",
                    ", ".join(unmatched),
                )
            if self.hb.auto.active:
                self.hb.auto.warm()  # reads the beat schedule now, reports entries it cannot monitor
        except Exception:
            self._guard_error("worker_ready")

    def on_process_init(self, **_: Any) -> None:
        # Prefork children are forked before worker_ready: build the beat-entry table here,
        # not on the first task's thread.
        try:
            if self.hb.auto.active:
                self.hb.auto.build()
        except Exception:
            self._guard_error("worker_process_init")

    def on_beat_init(self, sender: Any = None, **_: Any) -> None:
        # heartbeat_sync_on_beat_start: push schedules to the provider on a thread; beat never waits.
        try:
            if self.hb.settings.sync_on_beat_start and getattr(sender, "app", None) is self.hb.app:
                from celery_heartbeat.sync.engine import sync_in_background

                sync_in_background(self.hb.app)
        except Exception:
            self._guard_error("beat_init")

    def on_shutting_down(self, **_: Any) -> None:
        # Sent from the main process's SIGTERM handler: start delivering now, in parallel with
        # the children's flush, without waiting (expedite never blocks on a lock).
        try:
            self._shutdown_started = time.monotonic()
            self.hb.sender.expedite(self.hb.settings.shutdown_timeout)
        except Exception:
            self._guard_error("worker_shutting_down")

    def on_process_shutdown(self, **_: Any) -> None:
        # Prefork children leave through os._exit: atexit never runs there. Billiard then
        # sleeps BILLIARD_EXIT_PAUSE before exiting, while the sender thread keeps delivering.
        try:
            self.hb.sender.flush(max(0.0, self.hb.settings.shutdown_timeout - BILLIARD_EXIT_PAUSE))
        except Exception:
            self._guard_error("worker_process_shutdown")

    def on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        try:
            if getattr(sender, "app", self.hb.app) is not self.hb.app:
                return  # another app's worker in this process
            budget = self.hb.settings.shutdown_timeout
            if self._shutdown_started is not None:
                # One budget for the whole shutdown: children and this process flushed in parallel.
                budget = max(0.0, budget - (time.monotonic() - self._shutdown_started))
                self._shutdown_started = None
            if not self.hb.sender.flush(budget):
                stats = self.hb.sender.stats()
                logger.warning("celery-heartbeat: %d ping(s) not delivered at shutdown", stats["pending"])
        except Exception:
            self._guard_error("worker_shutdown")
