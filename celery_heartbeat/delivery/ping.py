"""A ping waiting to be delivered: which monitor, which signal, which run, and when it happened."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.providers import Kind, WireRequest, build_request


@dataclass(frozen=True)
class OutgoingPing:
    monitor: Monitor
    kind: Kind
    run_id: str | None = None
    detail: str | None = None
    #: `time.monotonic()` when the ping was made: its age (late success pings are dropped).
    created: float = field(default_factory=time.monotonic)
    #: `time.time()` when the event happened: travels as Cronitor's `stamp`, so a late ping is filed
    #: at its event's time. Left out, it is derived from `created` (a ping made from an event handed
    #: over by another process keeps that event's time).
    at: float = -1.0

    def __post_init__(self) -> None:
        if self.at < 0:
            object.__setattr__(self, "at", time.time() - max(0.0, time.monotonic() - self.created))

    @property
    def url(self) -> str:
        return self.monitor.url

    def request(self) -> WireRequest | None:
        return build_request(
            self.monitor.provider,
            self.monitor.url,
            self.kind,
            run_id=self.run_id,
            detail=self.detail,
            stamp=self.at,
        )
