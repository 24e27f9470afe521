"""Scheduler: how many attempts go out at once, to which hosts, and what an answer does (no threads, no HTTP)."""

from __future__ import annotations

from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.delivery.backoff import BackoffPolicy, Backoffs
from celery_heartbeat.delivery.book import PendingBook
from celery_heartbeat.delivery.ping import OutgoingPing
from celery_heartbeat.delivery.scheduler import Answer, Job, Limits, Scheduler
from celery_heartbeat.delivery.transport import Response

NOW = 100.0


def scheduler(**limits: float) -> Scheduler:
    book = PendingBook(clock=lambda: NOW)
    backoffs = Backoffs(BackoffPolicy(0.5, 30.0), jitter=lambda: 1.0)
    return Scheduler(book, backoffs, Limits(**limits))  # type: ignore[arg-type]


def submit(s: Scheduler, host: str, count: int) -> None:
    for i in range(count):
        s.book.put(OutgoingPing(Monitor(f"{host}/m{i}", "healthchecks"), "success", created=NOW))


def take_all(s: Scheduler, now: float = NOW) -> tuple[list[Job], float | None]:
    jobs = []
    while True:
        job, wait = s.take(now, None)
        if job is None:
            return jobs, wait
        jobs.append(job)


def ok(s: Scheduler, job: Job, now: float = NOW) -> None:
    s.record(job, Answer(Response(200), None, now), now, closed=False)


def test_a_host_that_never_answered_gets_one_attempt_then_full_concurrency() -> None:
    """First one attempt to a new host; once it answered, up to `concurrency` at once."""
    s = scheduler(concurrency=8)
    submit(s, "http://a.test", 20)
    first, _ = take_all(s)
    assert 1 == len(first)
    ok(s, first[0])
    jobs, wait = take_all(s)
    assert (8, 0.0 < (wait or 0.0) <= 1.0) == (len(jobs), True)  # the next place frees when one turns slow


def test_slow_attempts_free_their_place_up_to_max_threads() -> None:
    """Attempts older than slow_after stop counting, but never more than max_threads fly in all."""
    s = scheduler(concurrency=4, max_threads=6, slow_after=1.0)
    for host in ("http://a.test", "http://b.test"):
        submit(s, host, 1)
        ok(s, take_all(s)[0][0])
    for host in ("http://a.test", "http://b.test"):
        submit(s, host, 10)
    jobs, _ = take_all(s)
    assert 4 == len(jobs)
    later, wait = take_all(s, NOW + 1.5)
    assert (2, None) == (len(later), wait)  # 6 in flight: only an ending attempt makes room now


def test_a_host_is_capped_at_the_concurrency_even_when_its_attempts_are_slow() -> None:
    """A slow host never takes more than `concurrency` threads; other hosts get the rest."""
    s = scheduler(concurrency=2, max_threads=8)
    submit(s, "http://slow.test", 1)
    ok(s, take_all(s)[0][0])
    submit(s, "http://slow.test", 10)
    assert 2 == len(take_all(s)[0])
    assert 0 == len(take_all(s, NOW + 5)[0])


def test_no_answer_backs_off_the_host_and_limits_it_to_one_attempt() -> None:
    """A refused attempt pauses the host; after the pause it gets one attempt, not a burst."""
    s = scheduler()
    submit(s, "http://a.test", 1)
    ok(s, take_all(s)[0][0])
    submit(s, "http://a.test", 5)
    jobs, _ = take_all(s)
    for job in jobs:  # five attempts in flight together, all refused: one round, one pause
        s.record(job, Answer(None, "connection refused", NOW - 0.1), NOW, closed=False)
    assert (0, 1.0) == (len(take_all(s)[0]), take_all(s)[1])
    assert 1 == len(take_all(s, NOW + 1.0)[0])
    assert (5, 5) == (s.counts["failed"], s.book.pending)


def test_answers_are_counted_and_settle_the_book() -> None:
    """2xx sent, 4xx rejected (dropped), 5xx failed (kept, retried later); the first failure is logged."""
    s = scheduler()
    submit(s, "http://a.test", 1)
    ok(s, take_all(s)[0][0])
    submit(s, "http://a.test", 3)
    a, b, c = take_all(s)[0]
    assert s.record(a, Answer(Response(404), None, NOW), NOW, closed=False)
    assert s.record(b, Answer(Response(503), None, NOW), NOW, closed=False)
    ok(s, c)
    stats = s.stats()
    assert (2, 1, 1, 1) == (stats["sent"], stats["rejected"], stats["failed"], stats["pending"])
    (retry,), wait = take_all(s, NOW + 1.0)
    assert (retry.entry.ping.url, None) == (b.entry.ping.url, wait)
    assert "answering again" in (s.record(retry, Answer(Response(200), None, NOW + 1), NOW + 1, closed=False) or "")
    assert 1 == s.stats()["retried"]
