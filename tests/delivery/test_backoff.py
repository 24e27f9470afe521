"""Backoffs: per-URL for HTTP errors, per-host when no answer comes, Retry-After, urgency (pure data)."""

from __future__ import annotations

from celery_heartbeat.delivery.backoff import BackoffPolicy, Backoffs, host_of

URL = "https://hc-ping.com/aaaa"
SIBLING = "https://hc-ping.com/bbbb"
ELSEWHERE = "https://cronitor.link/p/k/job"


def backoffs(initial: float = 0.5, maximum: float = 30.0) -> Backoffs:
    return Backoffs(BackoffPolicy(initial, maximum), jitter=lambda: 1.0)  # no jitter: exact pauses


def test_pauses_double_up_to_the_maximum() -> None:
    """Each failure in a row doubles the pause, from twice `initial` up to `maximum`."""
    b = backoffs()
    pauses = [b.failed(URL, answered=True, began=0.0, now=0.0) for _ in range(8)]
    assert [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0] == pauses


def test_jitter_shortens_a_pause_by_at_most_a_quarter() -> None:
    """Pauses are spread (0.75 to 1 times), so many processes do not retry in lockstep."""
    policy = BackoffPolicy(0.5, 30.0)
    assert (0.75, 1.0) == (policy.pause(1, None, 0.0), policy.pause(1, None, 1.0))


def test_an_http_error_backs_off_its_url_only() -> None:
    """A 5xx pauses that URL; its host's other monitors and other hosts go on."""
    b = backoffs()
    b.failed(URL, answered=True, began=0.0, now=0.0)
    assert (1.0, 0.0, 0.0) == (b.wait(URL, 0.0), b.wait(SIBLING, 0.0), b.wait(ELSEWHERE, 0.0))
    assert b.answering(host_of(URL))


def test_no_answer_backs_off_the_whole_host_and_it_must_answer_again() -> None:
    """A refused or timed-out attempt pauses every URL of that host, and marks the host not answering."""
    b = backoffs()
    b.answered(URL, ok=True)
    b.failed(URL, answered=False, began=0.0, now=0.0)
    assert (1.0, 1.0, 0.0) == (b.wait(URL, 0.0), b.wait(SIBLING, 0.0), b.wait(ELSEWHERE, 0.0))
    assert not b.answering(host_of(URL))
    b.answered(SIBLING, ok=True)
    assert (0.0, True) == (b.wait(URL, 0.0), b.answering(host_of(URL)))


def test_retry_after_stretches_a_pause_up_to_its_cap() -> None:
    """Retry-After: 120 pauses the URL 120 s; beyond retry_after_max it is cut to that."""
    b = Backoffs(BackoffPolicy(0.5, 30.0, retry_after_max=600.0), jitter=lambda: 1.0)
    assert 120.0 == b.failed(URL, answered=True, began=0.0, now=0.0, retry_after=120.0)
    assert 600.0 == b.failed(SIBLING, answered=True, began=0.0, now=0.0, retry_after=86400.0)


def test_urgency_lets_each_url_be_tried_once_more() -> None:
    """A flush that began after the last failed attempt lifts the pause; a failure during it does not."""
    b = backoffs()
    b.failed(URL, answered=True, began=0.0, now=0.1)
    assert (1.0, 0.0) == (b.wait(URL, 0.1), b.wait(URL, 0.1, urgent_since=0.5))
    b.failed(URL, answered=True, began=0.6, now=0.7)
    assert 2.0 == b.wait(URL, 0.7, urgent_since=0.5)


def test_a_delivered_ping_clears_its_url() -> None:
    """Success resets the failure count: the next failure starts again from the first pause."""
    b = backoffs()
    for _ in range(3):
        b.failed(URL, answered=True, began=0.0, now=0.0)
    b.answered(URL, ok=True)
    assert 1.0 == b.failed(URL, answered=True, began=0.0, now=0.0)


def test_hosts_include_scheme_and_port() -> None:
    """Different ports or schemes are different delivery hosts (as distinct loopback addresses are)."""
    hosts = {host_of(u) for u in ("http://127.0.0.1:1/a", "http://127.0.0.1:2/a", "https://127.0.0.1:1/a")}
    assert 3 == len(hosts)
    assert "https://hc-ping.com" == host_of("https://HC-PING.com/abc")
