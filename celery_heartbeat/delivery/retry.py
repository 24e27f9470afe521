"""The one retry engine (tenacity) of the synchronous paths: the canvas/beat ping task, the CLI, the sync API client.

Attempts with exponential backoff and jitter, honouring Retry-After, bounded by
max attempts and an optional deadline. Waits stay short (`inline_wait_max`): a
longer Retry-After ends the call and is handed back. The background sender does
not use it: there each turn is one attempt and retries are scheduled (backoff.py).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_attempt

from celery_heartbeat._exceptions import TransportError
from celery_heartbeat.config.providers import WireRequest
from celery_heartbeat.delivery.outcome import Outcome, outcome_of, retryable
from celery_heartbeat.delivery.transport import Response, Transport


@dataclass(frozen=True)
class RetryPolicy:
    #: Seconds for one HTTP attempt (connect and each read).
    timeout: float
    max_attempts: int
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    #: The longest single wait between attempts (Retry-After included).
    inline_wait_max: float = 5.0


@dataclass(frozen=True)
class Tried:
    """The end of a retried call: the last answer, or the last error when none came."""

    response: Response | None
    attempts: int
    error: TransportError | None
    elapsed: float
    #: A Retry-After too long to wait here, which ended the call.
    retry_after: float | None = None


def call(
    attempt: Callable[[float], Response],
    policy: RetryPolicy,
    *,
    deadline: float | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> Tried:
    """Run `attempt(timeout)` until an answer that needs no retry, attempts run out, or `deadline`.

    Retries TransportError and 5xx/408/425/429. Any other exception from `attempt`
    is a bug: it ends the call as an error (never raised). With the deadline
    already past, no attempt is made (attempts 0).
    """
    started = time.monotonic()
    wait_cap = min(policy.backoff_max, policy.inline_wait_max)
    errors: list[TransportError] = []
    hinted: list[float] = []

    def remaining() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    def hint(state: RetryCallState) -> float | None:
        outcome = state.outcome
        if outcome is None or outcome.failed:
            return None
        response: Response = outcome.result()
        return response.retry_after if retryable(response) else None

    def wait(state: RetryCallState) -> float:
        exponent = min(state.attempt_number - 1, 16)
        seconds = min(wait_cap, policy.backoff_initial * 2.0**exponent + random.uniform(0.0, policy.backoff_initial))
        asked = hint(state)
        if asked is not None:
            seconds = max(seconds, asked)
        left = remaining()
        return seconds if left is None else max(0.0, min(seconds, left))

    def stop(state: RetryCallState) -> bool:
        asked = hint(state)
        if asked is not None and asked > wait_cap:
            hinted.append(asked)
            return True
        left = remaining()
        return stop_after_attempt(policy.max_attempts)(state) or (left is not None and left <= 0)

    def once() -> Response:
        left = remaining()
        timeout = policy.timeout if left is None else max(0.05, min(policy.timeout, left))
        try:
            return attempt(timeout)
        except TransportError as exc:
            errors.append(exc)
            raise

    def give_up(state: RetryCallState) -> Response | None:
        outcome = state.outcome
        return None if outcome is None or outcome.failed else outcome.result()

    left = remaining()
    if left is not None and left <= 0:
        return Tried(None, 0, TransportError("Timeout", "out of time"), 0.0)

    def pause(seconds: float) -> None:
        sleep(seconds)

    retrying = Retrying(
        stop=stop,
        wait=wait,
        sleep=pause,
        retry=retry_if_exception_type(TransportError) | retry_if_result(retryable),
        retry_error_callback=give_up,
    )
    response: Response | None
    try:
        response = retrying(once)
    except Exception as exc:  # a transport bug must not escape into Celery
        name = type(exc).__name__
        errors.append(TransportError(name, name))
        response = None
    attempts = int(retrying.statistics.get("attempt_number", 1))
    error = errors[-1] if response is None and errors else None
    return Tried(response, attempts, error, time.monotonic() - started, hinted[-1] if hinted else None)


def deliver(
    transport: Transport,
    request: WireRequest,
    policy: RetryPolicy,
    *,
    deadline: float | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> Outcome:
    """Send one ping now, with retries; never raises: the outcome says what happened."""
    tried = call(lambda timeout: transport.send(request, timeout), policy, deadline=deadline, sleep=sleep)
    outcome = outcome_of(
        tried.response, tried.attempts, tried.elapsed, tried.error.description if tried.error is not None else None
    )
    if tried.retry_after is not None:
        outcome = Outcome(
            outcome.result, outcome.attempts, outcome.status, outcome.error, outcome.elapsed, tried.retry_after
        )
    return outcome
