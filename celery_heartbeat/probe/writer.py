"""The writer thread: takes a snapshot at a steady pace and writes it atomically.

One thread per worker or beat process, never a task's thread and never once per
task. Its own heartbeat is the file's `written` time, so a frozen process
(SIGSTOP, a GIL-holding deadlock) shows as a stale file. The latest snapshot is
also kept in memory for the HTTP endpoint.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable, Generic, TypeVar

from celery_heartbeat.probe import state

logger = logging.getLogger("celery_heartbeat")

INTERVAL = 1.0
S = TypeVar("S", state.WorkerState, state.BeatState)


class StateWriter(Generic[S]):
    def __init__(self, path: str | None, snapshot: Callable[[], S], interval: float = INTERVAL) -> None:
        self.path = path
        self.snapshot: Callable[[], S] = snapshot
        self.interval = interval
        self.latest: S | None = None
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Write now (so a leftover file of the same name is replaced at once), then every interval."""
        if self.path is not None:
            directory = os.path.dirname(self.path)
            os.makedirs(directory, exist_ok=True)
            sweep(directory)
        self.write()
        self._thread = threading.Thread(target=self._run, name="celery-heartbeat-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.write()

    def nudge(self) -> None:
        """Write now rather than at the next beat (connected, disconnected): one Event.set, cheap anywhere."""
        self._wake.set()

    def write(self) -> None:
        try:
            current = self.snapshot()
            self.latest = current
            if self.path is not None:
                state.write_atomically(self.path, current)
            if self._failing:
                self._failing = False
                logger.warning("celery-heartbeat: probe state is written again")
        except Exception:
            if not self._failing:  # once per failure streak, not once a second
                self._failing = True
                logger.exception("celery-heartbeat: cannot write the probe state (probes will fail)")

    def close(self) -> None:
        """Stop writing and remove the file: a stopped process has no state. Only the process that started it."""
        if os.getpid() != self.pid:
            return  # a forked child inherited this object, not the thread
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.interval + 1.0)
        if self.path is not None:
            state.remove(self.path)


def sweep(directory: str) -> None:
    """Remove files left by processes that are gone (a crashed earlier container): they describe nobody."""
    names = [os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(state.SUFFIX)]
    for path in names:
        try:
            gone = state.process_gone(state.read(path).identity)
        except state.ProbeStateError:
            continue  # another writer's file being replaced, or not ours: leave it
        if gone:
            state.remove(path)
