"""The retry engine of the synchronous paths: deliver() against a real endpoint playing each fault."""

from __future__ import annotations

import email.utils
import socket
import time

import pytest

from celery_heartbeat.config.providers import WireRequest
from celery_heartbeat.delivery.outcome import Result
from celery_heartbeat.delivery.retry import RetryPolicy, deliver
from celery_heartbeat.delivery.transport import RequestsTransport, Response
from celery_heartbeat.testing import PingReceiver

SECRET = "6e1fbf8f-cd5c-4a9c-b3b2-secret"
POLICY = RetryPolicy(timeout=0.5, max_attempts=2, backoff_initial=0.05)


@pytest.fixture
def free_port() -> int:
    """A local port nothing listens on (connections are refused) until a test binds it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def get(url: str, policy: RetryPolicy = POLICY, **kwargs: object) -> tuple[Result, int, str | None, float]:
    transport = RequestsTransport()
    try:
        outcome = deliver(transport, WireRequest("GET", url), policy, **kwargs)  # type: ignore[arg-type]
    finally:
        transport.close()
    return outcome.result, outcome.attempts, outcome.error, outcome.elapsed


def test_a_2xx_is_sent_on_the_first_attempt(heartbeat_receiver: PingReceiver) -> None:
    """A healthy endpoint gets exactly one request."""
    assert (Result.SENT, 1, None) == get(heartbeat_receiver.url("ok"))[:3]
    assert 1 == len(heartbeat_receiver.pings)


def test_a_5xx_is_retried_up_to_max_attempts(heartbeat_receiver: PingReceiver) -> None:
    """HTTP 500 is retried; after max_attempts the outcome is FAILED, naming the status."""
    heartbeat_receiver.respond(500)
    policy = RetryPolicy(timeout=0.5, max_attempts=3, backoff_initial=0.05)
    assert (Result.FAILED, 3, "HTTP 500") == get(heartbeat_receiver.url("m"), policy)[:3]
    assert 3 == len(heartbeat_receiver.pings)


def test_a_4xx_is_rejected_without_retrying(heartbeat_receiver: PingReceiver) -> None:
    """404 means a wrong URL: retrying cannot help."""
    heartbeat_receiver.respond(404)
    assert (Result.REJECTED, 1, "HTTP 404") == get(heartbeat_receiver.url("m"))[:3]


def test_retry_after_is_waited_out_between_attempts(heartbeat_receiver: PingReceiver) -> None:
    """429 with Retry-After: 1 delays the second attempt by at least a second."""
    heartbeat_receiver.respond(429, headers={"Retry-After": "1"})
    assert (Result.FAILED, 2, "HTTP 429") == get(heartbeat_receiver.url("m"))[:3]
    first, second = heartbeat_receiver.pings
    assert second.time - first.time >= 0.95


def test_a_long_retry_after_ends_the_delivery_and_is_reported(heartbeat_receiver: PingReceiver) -> None:
    """Retry-After beyond the inline wait returns at once with the hint, for the sender to back off."""
    heartbeat_receiver.respond(429, headers={"Retry-After": "120"})
    transport = RequestsTransport()
    outcome = deliver(transport, WireRequest("GET", heartbeat_receiver.url("m")), POLICY)
    transport.close()
    assert (Result.FAILED, 1, 120.0) == (outcome.result, outcome.attempts, outcome.retry_after)
    assert outcome.elapsed < 0.5


def test_retry_after_as_an_http_date_is_understood(heartbeat_receiver: PingReceiver) -> None:
    """Retry-After may be an HTTP date: it becomes the seconds until then."""
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    heartbeat_receiver.respond(503, headers={"Retry-After": when})
    transport = RequestsTransport()
    outcome = deliver(transport, WireRequest("GET", heartbeat_receiver.url("m")), POLICY)
    transport.close()
    assert outcome.retry_after is not None and 28 <= outcome.retry_after <= 30


def test_a_hang_costs_one_timeout_per_attempt(heartbeat_receiver: PingReceiver) -> None:
    """An endpoint that never answers fails each attempt after `timeout`, not after its own delay."""
    heartbeat_receiver.respond(200, delay=10)
    result, attempts, error, elapsed = get(heartbeat_receiver.url("m"))
    assert (Result.FAILED, 2, "timed out") == (result, attempts, error)
    assert 1.0 <= elapsed < 2.0


def test_a_deadline_cuts_attempts_short(heartbeat_receiver: PingReceiver) -> None:
    """At shutdown the deadline bounds the whole delivery, whatever the per-attempt timeout."""
    heartbeat_receiver.respond(200, delay=10)
    policy = RetryPolicy(timeout=5.0, max_attempts=3)
    end = time.monotonic() + 0.3
    result, _, _, elapsed = get(heartbeat_receiver.url("m"), policy, deadline=end)
    assert Result.FAILED == result
    assert elapsed < 0.8


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("refused", "connection refused"),
        ("reset", "connection closed mid-response"),
        ("tls", "TLS error"),
        ("unresolvable", "host name not resolved"),
    ],
)
def test_network_faults_are_described_without_the_url(
    heartbeat_receiver: PingReceiver, free_port: int, fault: str, expected: str
) -> None:
    """Each network fault yields a short description that never contains the (secret) URL."""
    urls = {
        "refused": f"http://127.0.0.1:{free_port}/{SECRET}",
        "reset": heartbeat_receiver.url(SECRET),
        "tls": f"https://127.0.0.1:{heartbeat_receiver.port}/{SECRET}",
        "unresolvable": f"http://heartbeat.example.invalid/{SECRET}",
    }
    heartbeat_receiver.reset_connections(fault == "reset")
    result, attempts, error, _ = get(urls[fault])
    assert (Result.FAILED, 2, expected) == (result, attempts, error)


def test_a_transport_bug_never_escapes(heartbeat_receiver: PingReceiver) -> None:
    """An unexpected exception from a transport becomes a FAILED outcome, not an exception."""

    class Broken(RequestsTransport):
        def send(self, request: WireRequest, timeout: float) -> Response:
            raise RuntimeError("bug")

    outcome = deliver(Broken(), WireRequest("GET", heartbeat_receiver.url("m")), POLICY)
    assert (Result.FAILED, "RuntimeError") == (outcome.result, outcome.error)
