"""Beat side: when the scheduler loop last ran and when it means to wake next.

Celery's beat loop is `interval = scheduler.tick(); sleep(interval)`, and no
signal fires per pass, so this wraps `tick` on the one scheduler instance of the
running service (not the class): after each pass it notes the time and the
interval beat chose. A beat sleeping until a far-off entry is then known to be
asleep on purpose; a frozen or stuck one misses its own wake-up time.
"""

from __future__ import annotations

import atexit
import functools
import time
from typing import Any

from celery_heartbeat.probe import state
from celery_heartbeat.probe.writer import StateWriter


class BeatProbe:
    def __init__(self, service: Any, path: str) -> None:
        self.identity = state.identity()
        self.started = time.monotonic()
        self.tick: float | None = None
        self.next_wake: float | None = None
        self.phase = "running"
        self.scheduler = service.scheduler
        self.writer = StateWriter(path, self.snapshot)

    def start(self) -> None:
        original = self.scheduler.tick

        @functools.wraps(original)
        def tick(*args: Any, **kwargs: Any) -> Any:
            interval = original(*args, **kwargs)
            now = time.monotonic()
            self.next_wake = now + interval if isinstance(interval, (int, float)) and interval > 0 else now
            self.tick = now
            return interval

        self.scheduler.tick = tick
        self.writer.start()
        atexit.register(self.close)  # beat leaves through SystemExit on SIGTERM and SIGINT

    def close(self) -> None:
        self.phase = "stopping"
        self.writer.close()

    def snapshot(self) -> state.BeatState:
        return state.BeatState(
            identity=self.identity,
            written=time.monotonic(),
            written_at=state.wall_time(),
            started=self.started,
            phase=self.phase,
            tick=self.tick,
            next_wake=self.next_wake,
        )
