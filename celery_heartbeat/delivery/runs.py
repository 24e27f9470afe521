"""Per-process memory of runs: which ones ping (coalescing), and that a run finishes once.

A run is one task id across its retries. A run that sends a start ping is
decided when it starts, so a run whose start ping went out always gets its
finish ping; any other run is decided when it finishes (its start is not
recorded at all: the cheap path of every task). A failure is never coalesced
away, and a success that follows a failure always goes out (so a monitor is
never left "down" after the task recovered within the window).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

CAPACITY = 10_000
"""Runs remembered per process: bounds memory when finishes happen elsewhere (hard time limits)."""


@dataclass(frozen=True)
class _Run:
    url: str
    admitted: bool
    decided_at: float


def _reset_after_fork(ref: weakref.ref[RunBook]) -> Callable[[], None]:
    def reset() -> None:
        book = ref()
        if book is not None:
            book._reset()

    return reset


class RunBook:
    """Which runs ping: at most one admitted run per URL per `window` seconds, decided at start."""

    def __init__(self, window: float, capacity: int = CAPACITY) -> None:
        self.window = window
        self.capacity = capacity
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_after_fork(weakref.ref(self)))

    def _reset(self) -> None:
        """Fresh state (and a fresh lock) for a new process: its parent's runs are not its own."""
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._last_admitted: dict[str, float] = {}
        self._last_failure: dict[str, float] = {}
        self._failed_ids: OrderedDict[str, None] = OrderedDict()
        self.coalesced = 0

    def _admit(self, url: str, now: float) -> bool:
        last = self._last_admitted.get(url)
        if last is not None and now - last < self.window:
            return False
        self._last_admitted[url] = now
        return True

    def start(self, url: str, task_id: str, retries: int, at: float | None = None) -> bool:
        """Decide whether this run pings (its start, if wanted, and its finish).

        A retry seen first in this process is admitted: its start may have gone out elsewhere.
        `at`: when the start happened (``time.monotonic()``, in whichever process; default now).
        """
        now = time.monotonic() if at is None else at
        with self._lock:
            run = self._runs.get(task_id)
            if run is not None:
                return run.admitted
            admitted = True if retries > 0 else self._admit(url, now)
            self._runs[task_id] = _Run(url, admitted, now)
            if len(self._runs) > self.capacity:
                self._runs.popitem(last=False)
            return admitted

    def success(self, url: str, task_id: str, at: float | None = None) -> bool:
        """Whether this run's success pings: it was admitted at its start, or a failure came after
        its start, or (a run whose start was not recorded) none pinged within the window and no
        failure happened after it (a success older than a failure already decided never follows it:
        a pool process may hand a held success over late, see delivery/handover.py)."""
        now = time.monotonic() if at is None else at
        with self._lock:
            run = self._runs.pop(task_id, None) if self._runs else None
            if run is None:
                admitted = now >= self._last_failure.get(url, now) and self._admit(url, now)
            else:
                admitted = run.admitted or self._last_failure.get(url, -1.0) >= run.decided_at
            if admitted:
                return True
            self.coalesced += 1
            return False

    def failure(self, url: str, task_id: str, at: float | None = None) -> bool:
        """True once per run: Celery can fire task_failure twice for one hard time limit."""
        now = time.monotonic() if at is None else at
        with self._lock:
            self._runs.pop(task_id, None)
            if task_id in self._failed_ids:
                return False
            self._failed_ids[task_id] = None
            if len(self._failed_ids) > self.capacity:
                self._failed_ids.popitem(last=False)
            self._last_failure[url] = max(now, self._last_failure.get(url, now))
            self._last_admitted.pop(url, None)
            return True
