"""What to send next and what an answer means: the pending book, the backoffs and the attempts in flight.

No threads and no HTTP: the sender calls it under its lock, with the time.
- at most one ping per monitor in flight (the book), so a monitor sees its
  events in order;
- at most `concurrency` fresh attempts at once, to one host or many, and at most
  that many per host; an attempt running longer than `slow_after` stops
  counting, so a hanging host holds up other hosts' pings by at most that long.
  `max_threads` bounds the attempts in flight in all: two hosts that stop
  answering in the middle of a burst hold `concurrency` each until they time out;
- a host that has not answered yet (or stopped answering) gets one attempt at a
  time until it answers, so a dead host costs one attempt (and one thread) per
  backoff round;
- one attempt per turn: a failed ping waits out its backoff at the head of its
  monitor's queue while other monitors go on.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery_heartbeat.delivery.backoff import Backoffs, host_of
from celery_heartbeat.delivery.book import Entry, PendingBook
from celery_heartbeat.delivery.outcome import Result, classify
from celery_heartbeat.delivery.transport import Response

COUNTERS = ("sent", "failed", "rejected", "retried", "coalesced", "dropped")
"""sent: delivered. failed: an attempt without success (the ping is kept). rejected: a 4xx
answer (the ping is dropped). retried: attempts after a ping's first. coalesced: a pending
ping replaced by a newer one of the same slot. dropped: too old, or closed."""


@dataclass(frozen=True)
class Limits:
    #: Attempts in flight at once (younger than `slow_after`), to one host or several; also per host.
    concurrency: int = 8
    #: Attempts in flight at most, counting those stuck on slow hosts (one thread each).
    max_threads: int = 24
    #: An attempt older than this no longer holds a place among the `concurrency`.
    slow_after: float = 1.0


@dataclass(eq=False)
class Job:
    """One attempt handed out: the ping's book entry, its host, and when it was handed out."""

    entry: Entry
    host: str
    started: float


@dataclass(frozen=True)
class Answer:
    """How one attempt went: an HTTP answer, or none (`error` says why, in words safe to log)."""

    response: Response | None
    error: str | None
    began: float
    #: False: the provider has no request for this ping (it is dropped).
    sendable: bool = True


class Scheduler:
    """Hands out attempts and records their answers; the caller holds a lock around every call."""

    def __init__(self, book: PendingBook, backoffs: Backoffs, limits: Limits) -> None:
        self.book = book
        self.backoffs = backoffs
        self.limits = limits
        self.flights: set[Job] = set()
        self._host_busy: dict[str, int] = {}
        self.counts = dict.fromkeys(COUNTERS, 0)

    def take(self, now: float, urgent_since: float | None) -> tuple[Job | None, float | None]:
        """The next attempt that may start now (None: none), and the seconds until one may (None: on an event).

        `urgent_since`: a flush or shutdown began then; URLs and hosts whose last failed
        attempt began before it are tried once more at once.
        """
        limits = self.limits
        if len(self.flights) >= limits.max_threads:
            return None, None  # only an attempt ending makes room: it wakes the caller
        fresh = [job.started for job in self.flights if now - job.started < limits.slow_after]
        if len(fresh) >= limits.concurrency:
            if not self.book.queued:
                return None, None
            return None, max(0.0, min(fresh) + limits.slow_after - now)  # one turning slow frees a place

        def host_gate(host: str) -> float | None:
            cap = limits.concurrency if self.backoffs.answering(host) else 1
            if self._host_busy.get(host, 0) >= cap:
                return None
            return self.backoffs.host_wait(host, now, urgent_since)

        def url_gate(url: str) -> float | None:
            state = self.backoffs.urls.get(url)
            return 0.0 if state is None else state.blocked_for(now, urgent_since)

        entry, wait = self.book.take(host_gate, url_gate)
        if entry is None:
            return None, wait
        job = Job(entry, host_of(entry.ping.url), now)
        self.flights.add(job)
        self._host_busy[job.host] = self._host_busy.get(job.host, 0) + 1
        return job, wait

    def cancel(self, job: Job) -> None:
        """The attempt could not start (no thread at interpreter exit): the ping goes back, untried."""
        self._land(job)
        self.book.retry(job.entry)
        job.entry.tries -= 1

    def record(self, job: Job, answer: Answer, now: float, *, closed: bool) -> str | None:
        """Settle an attempt; returns a log message (a %-format of URL and status) when the URL's state changed."""
        self._land(job)
        entry = job.entry
        url = entry.ping.url
        if entry.tries:
            self.counts["retried"] += 1
        state = self.backoffs.url_state(url)
        response = answer.response
        result = Result.FAILED if response is None else classify(response)
        message: str | None = None
        if not answer.sendable:
            self.book.discard(entry)
        elif result is Result.SENT:
            self.counts["sent"] += 1
            if state.failing:
                message = "celery-heartbeat: %s is answering again (%s)"
            self.backoffs.answered(url, ok=True)
            self.book.done(entry, delivered=True)
        elif result is Result.REJECTED:
            self.counts["rejected"] += 1
            if not state.failing:
                message = "celery-heartbeat: %s rejected a ping (%s); check the URL, such pings are dropped"
            self.backoffs.answered(url, ok=False)
            state.failing = True
            self.book.done(entry, delivered=False)
        else:
            self.counts["failed"] += 1
            if not state.failing:
                message = (
                    "celery-heartbeat: cannot deliver pings to %s (%s); "
                    "tasks are unaffected, pings are kept and retried"
                )
            retry_after = response.retry_after if response is not None else None
            answered = response is not None
            self.backoffs.failed(url, answered=answered, began=answer.began, now=now, retry_after=retry_after)
            if closed:
                self.book.discard(entry)
            else:
                self.book.retry(entry)
        return message

    def all_blocked(self, now: float, urgent_since: float | None) -> bool:
        """Whether nothing is in flight and every pending ping waits out a backoff (earned since `urgent_since`)."""
        if self.flights:
            return False
        return all(self.backoffs.wait(url, now, urgent_since) > 0 for url in self.book.ready_urls())

    def stats(self) -> dict[str, int]:
        out = dict(self.counts)
        out["coalesced"] += self.book.coalesced
        out["dropped"] += self.book.dropped
        out["pending"] = self.book.pending
        return out

    def _land(self, job: Job) -> None:
        self.flights.discard(job)
        busy = self._host_busy.get(job.host, 0) - 1
        if busy > 0:
            self._host_busy[job.host] = busy
        else:
            self._host_busy.pop(job.host, None)
