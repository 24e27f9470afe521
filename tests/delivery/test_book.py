"""PendingBook: per-monitor order, coalescing, owed finishes and ageing, as pure data (no threads, no HTTP)."""

from __future__ import annotations

from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.delivery.book import Entry, PendingBook
from celery_heartbeat.delivery.ping import OutgoingPing

A = Monitor("https://hc-ping.com/aaaa", "healthchecks")
B = Monitor("https://hc-ping.com/bbbb", "healthchecks")
C = Monitor("https://other.example/cccc", "healthchecks")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def go(_: str) -> float | None:
    return 0.0


def ping(monitor: Monitor, kind: str, run: str = "", at: float = 1000.0) -> OutgoingPing:
    return OutgoingPing(monitor, kind, run or None, created=at)  # type: ignore[arg-type]


def take(book: PendingBook) -> Entry:
    entry, _ = book.take(go, go)
    assert entry is not None
    return entry


def drain(book: PendingBook) -> list[str]:
    """Deliver everything, one at a time; each as "kind:run"."""
    out = []
    while True:
        entry, _ = book.take(go, go)
        if entry is None:
            return out
        out.append(f"{entry.ping.kind}:{entry.ping.run_id or ''}")
        book.done(entry, delivered=True)


def test_a_monitor_has_one_ping_in_flight_and_its_next_waits() -> None:
    """While a monitor's head is in flight, its next ping is not offered; other monitors' pings are."""
    book = PendingBook(clock=Clock())
    book.put(ping(A, "success", "1"))
    book.put(ping(A, "failure", "2"))
    book.put(ping(B, "success", "3"))
    first = take(book)
    second = take(book)
    assert (A.url, B.url) == (first.ping.url, second.ping.url)
    assert (None, None) == book.take(go, go)
    book.done(first, delivered=True)
    assert "failure" == take(book).ping.kind


def test_a_failed_ping_goes_back_to_the_head_of_its_monitor() -> None:
    """After failed attempts, a monitor's pings still go out in the order their events happened."""
    book = PendingBook(clock=Clock())
    book.put(ping(A, "start", "1"))
    book.put(ping(A, "failure", "1"))
    for _ in range(3):
        entry = take(book)
        assert "start" == entry.ping.kind
        book.retry(entry)
    assert 3 == entry.tries
    assert ["start:1", "failure:1"] == drain(book)


def test_a_newer_ping_replaces_an_older_one_of_its_slot_at_its_own_place() -> None:
    """success 1, failure 2, success 3 leave failure 2 then success 3: the last event stays last."""
    book = PendingBook(clock=Clock())
    for kind, run in (("success", "1"), ("failure", "2"), ("success", "3")):
        book.put(ping(A, kind, run))
    assert ["failure:2", "success:3"] == drain(book)
    assert 1 == book.coalesced


def test_a_failure_is_only_replaced_by_a_newer_failure() -> None:
    """However many successes follow, a pending failure stays; only a newer failure takes its slot."""
    book = PendingBook(clock=Clock())
    book.put(ping(A, "failure", "1"))
    for i in range(100):
        book.put(ping(A, "success", f"s{i}"))
    assert ["failure:1", "success:s99"] == drain(book)


def test_a_failed_ping_gives_way_to_a_newer_one_that_arrived_meanwhile() -> None:
    """A success that failed while a newer success was queued is dropped, not sent after it."""
    book = PendingBook(clock=Clock())
    book.put(ping(A, "success", "1"))
    entry = take(book)
    book.put(ping(A, "failure", "2"))
    book.put(ping(A, "success", "3"))
    book.retry(entry)
    assert ["failure:2", "success:3"] == drain(book)
    assert 1 == book.coalesced


def test_a_run_whose_start_was_sent_keeps_its_finish() -> None:
    """Once a start was delivered, that run's finish has its own slot: later runs cannot coalesce it."""
    book = PendingBook(clock=Clock())
    book.put(ping(A, "start", "1"))
    book.done(take(book), delivered=True)
    book.put(ping(A, "success", "1"))
    book.put(ping(A, "start", "2"))
    book.put(ping(A, "success", "2"))
    book.put(ping(A, "success", "3"))
    assert ["success:1", "success:3"] == drain(book)  # run 2 gave way whole, start included


def test_the_finish_of_a_start_in_flight_is_owed_too() -> None:
    """A finish queued while its start is in flight is held for it; if the start fails, it is released."""
    book = PendingBook(clock=Clock())
    book.put(ping(A, "start", "1"))
    start = take(book)
    book.put(ping(A, "success", "1"))
    book.put(ping(A, "success", "2"))
    assert ["success", "success"] == [p.kind for p in book.queue_of(A.url)]
    book.retry(start)  # not delivered: run 1's finish goes back to the shared slot, where run 2's is newer
    assert ["start:1", "success:2"] == [f"{p.kind}:{p.run_id}" for p in book.queue_of(A.url)]


def test_a_finish_that_gives_way_takes_its_unsent_start_along() -> None:
    """A start must never go out once its own finish cannot."""
    book = PendingBook(clock=Clock())
    for kind, run in (("start", "1"), ("start", "2"), ("success", "2"), ("success", "1")):
        book.put(ping(A, kind, run))
    delivered = drain(book)
    assert "start:2" not in delivered and "success:1" == delivered[-1]
    assert 0 == book.pending


def test_success_pings_age_out_but_failures_never_do() -> None:
    """Past max_age a success or start is dropped when its turn comes; a failure is still offered."""
    clock = Clock()
    book = PendingBook(max_age=60.0, clock=clock)
    book.put(ping(A, "success", "1", at=clock.now))
    book.put(ping(A, "failure", "2", at=clock.now))
    clock.now += 61
    assert ["failure:2"] == drain(book)
    assert 1 == book.dropped


def test_memory_is_bounded_by_monitors_and_kinds() -> None:
    """100,000 pings to one monitor, none delivered, leave at most one per kind queued."""
    book = PendingBook(clock=Clock())
    for i in range(100_000):
        book.put(ping(A, ("start", "success", "failure")[i % 3], f"r{i}"))
    assert book.pending <= 3
    assert 100_000 == book.pending + book.coalesced


def test_owed_runs_are_capped() -> None:
    """Only `owed_capacity` started runs are remembered; the oldest's finish falls back to the shared slot."""
    book = PendingBook(owed_capacity=10, clock=Clock())
    for i in range(50):
        book.put(ping(A, "start", f"r{i}"))
        book.done(take(book), delivered=True)
    assert 10 == book.owed()


def test_hosts_take_turns() -> None:
    """Monitors on two hosts are offered alternately, whatever order they arrived in."""
    book = PendingBook(clock=Clock())
    for monitor in (A, B, C):
        book.put(ping(monitor, "success"))
    order = [take(book).ping.url for _ in range(3)]
    assert C.url == order[1]


def test_gates_hold_back_hosts_and_urls_and_say_when_to_look_again() -> None:
    """A blocked host or URL is skipped; take() reports the soonest time a blocked one may go."""
    book = PendingBook(clock=Clock())
    book.put(ping(A, "success"))
    book.put(ping(C, "success"))

    def host_gate(host: str) -> float | None:
        return 5.0 if host == "https://other.example" else 0.0

    def url_gate(url: str) -> float | None:
        return 2.0 if url == A.url else 0.0

    assert (None, 2.0) == book.take(host_gate, url_gate)
    assert (None, None) == book.take(lambda host: None, go)
    entry, _ = book.take(go, go)
    assert entry is not None


def test_clear_drops_what_is_queued_but_not_what_is_in_flight() -> None:
    """close() empties the queues; a ping in flight is settled by its attempt."""
    book = PendingBook(clock=Clock())
    book.put(ping(A, "success", "1"))
    entry = take(book)
    book.put(ping(A, "failure", "2"))
    assert (1, 1) == (book.clear(), book.pending)
    book.discard(entry)
    assert (0, 2) == (book.pending, book.dropped)
