"""A ping waiting to be delivered: which monitor, which signal, which run."""

from __future__ import annotations

from dataclasses import dataclass, field
from time import monotonic

from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.providers import Kind, WireRequest, build_request


@dataclass(frozen=True)
class Ping:
    monitor: Monitor
    kind: Kind
    run_id: str | None = None
    detail: str | None = None
    created: float = field(default_factory=monotonic)

    @property
    def key(self) -> tuple[str, str]:
        """Pending pings coalesce on this key: memory is bounded by monitors x kinds."""
        return (self.monitor.url, self.kind)

    def request(self) -> WireRequest | None:
        return build_request(
            self.monitor.provider,
            self.monitor.url,
            self.kind,
            run_id=self.run_id,
            detail=self.detail,
        )
