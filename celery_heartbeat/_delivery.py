"""One ping's delivery: attempts with exponential backoff and jitter (tenacity), honouring 429.

Used by the background sender and, synchronously, by the canvas ping task and
the CLI. Never raises: the outcome says what happened.
"""

from __future__ import annotations

import email.utils
import enum
import time
from dataclasses import dataclass
from typing import Callable

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from celery_heartbeat._providers import WireRequest
from celery_heartbeat._transport import Transport


class Result(enum.Enum):
    SENT = "sent"  # 2xx/3xx
    REJECTED = "rejected"  # 4xx other than 408/429: retrying cannot help
    FAILED = "failed"  # attempts exhausted on network errors, timeouts, 5xx, 408, 429


@dataclass(frozen=True)
class Outcome:
    result: Result
    attempts: int
    status: int | None = None
    error: str | None = None
    elapsed: float = 0.0

    @property
    def sent(self) -> bool:
        return self.result is Result.SENT


RETRYABLE_STATUS = frozenset({408, 425, 429})


def _retryable(response: requests.Response | None) -> bool:
    return response is not None and (response.status_code >= 500 or response.status_code in RETRYABLE_STATUS)


def retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (delta or HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout: float
    max_attempts: int
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


def deliver(
    transport: Transport,
    request: WireRequest,
    policy: DeliveryPolicy,
    *,
    deadline: Callable[[], float | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Send with retries; `deadline()` (a monotonic time or None) can shorten everything at shutdown."""
    started = time.monotonic()
    # Exponential backoff plus random jitter (spelled this way to work on tenacity 8 and 9 alike).
    backoff = wait_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max) + wait_random(
        0, policy.backoff_initial
    )

    def remaining() -> float | None:
        end = deadline() if deadline is not None else None
        return None if end is None else end - time.monotonic()

    def wait(state: RetryCallState) -> float:
        seconds = float(backoff(state))
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response = outcome.result()
            if response is not None and response.status_code == 429:
                hinted = retry_after_seconds(response)
                if hinted is not None:
                    seconds = min(max(seconds, hinted), policy.backoff_max)
        left = remaining()
        return seconds if left is None else max(0.0, min(seconds, left))

    def stop(state: RetryCallState) -> bool:
        left = remaining()
        return stop_after_attempt(policy.max_attempts)(state) or (left is not None and left <= 0)

    errors: list[str] = []

    def attempt() -> requests.Response:
        left = remaining()
        timeout = policy.timeout if left is None else max(0.05, min(policy.timeout, left))
        try:
            return transport.send(request, timeout)
        except requests.RequestException as exc:
            errors.append(type(exc).__name__)
            raise

    def give_up(state: RetryCallState) -> requests.Response | None:
        outcome = state.outcome
        return None if outcome is None or outcome.failed else outcome.result()

    retrying = Retrying(
        stop=stop,
        wait=wait,
        sleep=sleep,
        retry=retry_if_exception_type(requests.RequestException) | retry_if_result(_retryable),
        retry_error_callback=give_up,
    )
    try:
        response: requests.Response | None = retrying(attempt)
    except Exception as exc:  # a transport bug must not escape into Celery
        errors.append(type(exc).__name__)
        response = None
    attempts = int(retrying.statistics.get("attempt_number", 1))
    elapsed = time.monotonic() - started
    if response is None:
        return Outcome(Result.FAILED, attempts, error=errors[-1] if errors else "error", elapsed=elapsed)
    status = response.status_code
    if status < 400:
        return Outcome(Result.SENT, attempts, status=status, elapsed=elapsed)
    if _retryable(response):
        return Outcome(Result.FAILED, attempts, status=status, error=f"HTTP {status}", elapsed=elapsed)
    return Outcome(Result.REJECTED, attempts, status=status, error=f"HTTP {status}", elapsed=elapsed)
