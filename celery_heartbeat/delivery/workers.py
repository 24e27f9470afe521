"""Worker threads: started on demand, each with its own keep-alive transport, ended when idle.

The pool shares its owner's lock. `hand(job)` (called under that lock) gives a
job to a worker that will look for one (an idle one, or one just done), else
starts a thread. A worker runs `attempt(transport, job)` outside the lock, then
`settle(job, result)` under it (in the same hold that makes it available again,
so a job handed out right after goes to it, over its open connection, instead
of to a new thread), then whatever `settle` returned, outside the lock again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from celery_heartbeat.delivery.transport import Transport

Settle = Callable[[Any, Any], Optional[Callable[[], None]]]


class WorkerPool:
    def __init__(
        self,
        lock: threading.Lock,
        *,
        attempt: Callable[[Transport, Any], Any],
        settle: Settle,
        on_error: Callable[[], None],
        transport_factory: Callable[[], Transport],
        name: str,
        idle_exit: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = lock
        self._work = threading.Condition(lock)
        self._attempt = attempt
        self._settle = settle
        self._on_error = on_error
        self._transport_factory = transport_factory
        self._name = name
        self._idle_exit = idle_exit
        self._clock = clock
        self._jobs: deque[Any] = deque()  # handed out, not yet picked up
        self._threads: set[threading.Thread] = set()
        # Workers that will look at `_jobs` before they wait or exit: idle ones, new ones,
        # and those just done with a job.
        self._claimants = 0
        self._started = 0
        self.closed = False

    @property
    def alive(self) -> int:
        """Worker threads alive (caller holds the lock)."""
        return len(self._threads)

    def hand(self, job: Any) -> bool:
        """Give `job` to a worker (caller holds the lock); False if no thread can start (interpreter exit)."""
        self._jobs.append(job)
        if self._claimants >= len(self._jobs):
            self._work.notify()
            return True
        self._started += 1
        thread = threading.Thread(target=self._run, name=f"{self._name}-{self._started}", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self._jobs.remove(job)
            return False
        self._threads.add(thread)
        self._claimants += 1
        return True

    def close(self) -> None:
        """Let every worker exit once its job (if any) is done (caller holds the lock)."""
        self.closed = True
        self._work.notify_all()

    def _run(self) -> None:
        transport: Transport | None = None
        try:
            while True:
                job = self._next()
                if job is None:
                    return
                try:
                    if transport is None:
                        transport = self._transport_factory()
                    result = self._attempt(transport, job)
                except Exception:
                    self._on_error()
                    result = None
                follow_up = None
                with self._lock:
                    self._claimants += 1  # looks for its next job right after
                    try:
                        follow_up = self._settle(job, result)
                    except Exception:  # never let the thread die: later jobs still matter
                        self._on_error()
                if follow_up is not None:
                    follow_up()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
            if transport is not None:
                try:
                    transport.close()
                except Exception:
                    self._on_error()

    def _next(self) -> Any:
        """The next job; waits for one. None: exit (idle for `idle_exit`, or closed)."""
        with self._lock:
            idle_since = self._clock()
            while not self._jobs:
                idle = self._clock() - idle_since
                if self.closed or idle >= self._idle_exit:
                    self._claimants -= 1
                    return None
                self._work.wait(self._idle_exit - idle)
            self._claimants -= 1
            return self._jobs.popleft()
