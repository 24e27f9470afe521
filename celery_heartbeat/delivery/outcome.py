"""What one answer means for a ping: sent, rejected for good, or worth another try later."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from celery_heartbeat.delivery.transport import Response

RETRYABLE_STATUS = frozenset({408, 425, 429})


class Result(enum.Enum):
    SENT = "sent"  # 2xx/3xx
    REJECTED = "rejected"  # 4xx other than 408/425/429: retrying cannot help
    FAILED = "failed"  # no answer (network error, timeout), 5xx, 408, 425, 429


def retryable(response: Response) -> bool:
    return response.status >= 500 or response.status in RETRYABLE_STATUS


def classify(response: Response) -> Result:
    if response.ok:
        return Result.SENT
    return Result.FAILED if retryable(response) else Result.REJECTED


@dataclass(frozen=True)
class Outcome:
    """How a delivery ended (one attempt in the background, several on the synchronous paths)."""

    result: Result
    attempts: int
    status: int | None = None
    #: A short description safe to log: never the URL (it is a secret) nor the server's text.
    error: str | None = None
    elapsed: float = 0.0
    #: Seconds the server asked us to wait (Retry-After) when the delivery ended on it.
    retry_after: float | None = None

    @property
    def sent(self) -> bool:
        return self.result is Result.SENT


def outcome_of(response: Response | None, attempts: int, elapsed: float, error: str | None = None) -> Outcome:
    """The outcome of the last answer (None: no answer came, `error` says why)."""
    if response is None:
        return Outcome(Result.FAILED, attempts, error=error or "error", elapsed=elapsed)
    result = classify(response)
    if result is Result.SENT:
        return Outcome(result, attempts, status=response.status, elapsed=elapsed)
    hint = response.retry_after if result is Result.FAILED else None
    return Outcome(result, attempts, response.status, f"HTTP {response.status}", elapsed, hint)
