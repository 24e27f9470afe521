"""One ping's delivery: attempts with exponential backoff and jitter (tenacity), honouring Retry-After.

Used by the background sender and, synchronously, by the canvas ping task and
the CLI. Never raises: the outcome says what happened. Waits inside one
delivery stay short (`inline_wait_max`): a longer Retry-After ends the delivery
and is handed back in the outcome, so the background sender can back that URL
off without holding up pings to every other monitor.
"""

from __future__ import annotations

import email.utils
import enum
import random
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
)

from celery_heartbeat._transport import Transport
from celery_heartbeat.config.providers import WireRequest


class Result(enum.Enum):
    SENT = "sent"  # 2xx/3xx
    REJECTED = "rejected"  # 4xx other than 408/425/429: retrying cannot help
    FAILED = "failed"  # attempts exhausted on network errors, timeouts, 5xx, 408, 425, 429


@dataclass(frozen=True)
class Outcome:
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
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes, contexts and wrapped reasons (urllib3 nests them deeply)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nested, BaseException):
                todo.append(nested)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))


def describe_error(exc: BaseException) -> str:
    """What went wrong, in words safe to log (exception messages carry the URL, a secret)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    for cause in _causes(exc):
        if isinstance(cause, (ssl.SSLError, requests.exceptions.SSLError)):
            return "TLS error"
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return "host name not resolved"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
            return "connection reset"
        if type(cause).__name__ in ("RemoteDisconnected", "ProtocolError", "BadStatusLine"):
            return "connection closed mid-response"
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return "timed out"
    return type(exc).__name__


@dataclass(frozen=True)
class DeliveryPolicy:
    #: Seconds for one HTTP attempt (connect and each read).
    timeout: float
    max_attempts: int
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    #: The longest single wait between attempts inside one delivery (Retry-After included).
    inline_wait_max: float = 5.0


def deliver(
    transport: Transport,
    request: WireRequest,
    policy: DeliveryPolicy,
    *,
    deadline: Callable[[], float | None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> Outcome:
    """Send with retries; `deadline()` (a monotonic time or None) can shorten everything at shutdown."""
    started = time.monotonic()
    wait_cap = min(policy.backoff_max, policy.inline_wait_max)
    hinted: list[float] = []

    def remaining() -> float | None:
        end = deadline() if deadline is not None else None
        return None if end is None else end - time.monotonic()

    def last_hint(state: RetryCallState) -> float | None:
        outcome = state.outcome
        if outcome is None or outcome.failed:
            return None
        response = outcome.result()
        if response is None or not _retryable(response):
            return None
        return retry_after_seconds(response)

    def wait(state: RetryCallState) -> float:
        exponent = min(state.attempt_number - 1, 16)
        jitter = random.uniform(0.0, policy.backoff_initial)
        seconds = min(wait_cap, policy.backoff_initial * 2.0**exponent + jitter)
        hint = last_hint(state)
        if hint is not None:
            seconds = max(seconds, hint)
        left = remaining()
        return seconds if left is None else max(0.0, min(seconds, left))

    def stop(state: RetryCallState) -> bool:
        hint = last_hint(state)
        if hint is not None and hint > wait_cap:
            hinted.append(hint)  # too long to wait here: the sender backs this URL off instead
            return True
        left = remaining()
        return stop_after_attempt(policy.max_attempts)(state) or (left is not None and left <= 0)

    errors: list[str] = []

    def attempt() -> requests.Response:
        left = remaining()
        timeout = policy.timeout if left is None else max(0.05, min(policy.timeout, left))
        try:
            return transport.send(request, timeout)
        except requests.RequestException as exc:
            errors.append(describe_error(exc))
            raise

    def give_up(state: RetryCallState) -> requests.Response | None:
        outcome = state.outcome
        return None if outcome is None or outcome.failed else outcome.result()

    def pause(seconds: float) -> None:
        sleep(seconds)

    retrying = Retrying(
        stop=stop,
        wait=wait,
        sleep=pause,
        retry=retry_if_exception_type(requests.RequestException) | retry_if_result(_retryable),
        retry_error_callback=give_up,
    )
    try:
        response: requests.Response | None = retrying(attempt)
    except Exception as exc:  # a transport bug must not escape into Celery
        errors.append(describe_error(exc))
        response = None
    attempts = int(retrying.statistics.get("attempt_number", 1))
    elapsed = time.monotonic() - started
    if response is None:
        return Outcome(Result.FAILED, attempts, error=errors[-1] if errors else "error", elapsed=elapsed)
    status = response.status_code
    if status < 400:
        return Outcome(Result.SENT, attempts, status=status, elapsed=elapsed)
    if _retryable(response):
        retry_after = hinted[-1] if hinted else retry_after_seconds(response)
        return Outcome(
            Result.FAILED,
            attempts,
            status=status,
            error=f"HTTP {status}",
            elapsed=elapsed,
            retry_after=retry_after,
        )
    return Outcome(Result.REJECTED, attempts, status=status, error=f"HTTP {status}", elapsed=elapsed)
