"""RunBook: per-process coalescing decided when a run starts; one finish per run."""

from __future__ import annotations

import os
import time

import pytest

from celery_heartbeat.delivery.runs import RunBook

URL = "https://hc-ping.com/abc"


def test_first_run_in_the_window_is_admitted_and_the_rest_coalesce() -> None:
    """Within one window only the first run of a URL pings; later runs are counted as coalesced."""
    book = RunBook(window=60.0)
    assert [True, False, False] == [book.start(URL, f"id{i}", 0) for i in range(3)]
    assert [True, False, False] == [book.success(URL, f"id{i}") for i in range(3)]
    assert 2 == book.coalesced


def test_the_decision_is_made_at_start_not_at_finish() -> None:
    """A run admitted at start pings its finish even when later runs finished first."""
    book = RunBook(window=60.0)
    assert book.start(URL, "long", 0)
    assert not book.start(URL, "short", 0)
    assert (False, True) == (book.success(URL, "short"), book.success(URL, "long"))


def test_a_new_window_admits_again() -> None:
    """Once the window has passed, the next run to start is admitted."""
    book = RunBook(window=0.2)
    assert (True, False) == (book.start(URL, "a", 0), book.start(URL, "b", 0))
    time.sleep(0.25)
    assert book.start(URL, "c", 0)


def test_window_zero_admits_every_run() -> None:
    """heartbeat_coalesce_seconds=0 disables coalescing."""
    book = RunBook(window=0.0)
    assert [True] * 5 == [book.start(URL, f"id{i}", 0) for i in range(5)]


def test_urls_are_coalesced_independently() -> None:
    """Each URL has its own window."""
    book = RunBook(window=60.0)
    assert (True, True) == (book.start(URL, "a", 0), book.start(URL + "2", "b", 0))


def test_a_retry_keeps_its_runs_decision() -> None:
    """A retry in the same process reuses the run's decision: admitted stays admitted."""
    book = RunBook(window=60.0)
    assert book.start(URL, "run", 0)
    assert not book.start(URL, "other", 0)
    assert (True, False) == (book.start(URL, "run", 1), book.start(URL, "other", 1))


def test_a_retry_first_seen_in_this_process_is_admitted() -> None:
    """A retry whose first attempt ran elsewhere may have sent its start there, so it pings."""
    book = RunBook(window=60.0)
    assert book.start(URL, "first", 0)
    assert book.start(URL, "retried-elsewhere", 2)
    assert book.success(URL, "retried-elsewhere")


def test_failure_is_reported_once_per_run() -> None:
    """Celery fires task_failure twice for a hard time limit: only the first counts."""
    book = RunBook(window=60.0)
    book.start(URL, "run", 0)
    assert [True, False] == [book.failure(URL, "run"), book.failure(URL, "run")]


def test_failures_are_never_coalesced() -> None:
    """Every failed run pings, whatever the window."""
    book = RunBook(window=60.0)
    for i in range(3):
        book.start(URL, f"id{i}", 0)
    assert [True, True, True] == [book.failure(URL, f"id{i}") for i in range(3)]


def test_a_success_after_a_failure_always_goes_out() -> None:
    """A coalesced run that succeeds after a failure pings, so the monitor is not left down."""
    book = RunBook(window=60.0)
    assert book.start(URL, "ok-first", 0)
    assert not book.start(URL, "recovers", 0)
    assert book.failure(URL, "ok-first")
    assert book.success(URL, "recovers")


def test_a_failure_reopens_admission() -> None:
    """The next run after a failure is admitted, so its start and finish both go out."""
    book = RunBook(window=60.0)
    assert book.start(URL, "a", 0)
    assert book.failure(URL, "a")
    assert book.start(URL, "b", 0)


def test_a_finish_without_a_seen_start_is_decided_at_finish() -> None:
    """A success whose prerun this process never saw is admitted by the window at finish time."""
    book = RunBook(window=60.0)
    assert [True, False] == [book.success(URL, "x"), book.success(URL, "y")]


def test_memory_is_bounded_by_capacity() -> None:
    """Runs that never finish here (hard time limits end in the parent) are forgotten oldest first."""
    book = RunBook(window=0.0, capacity=100)
    for i in range(1000):
        book.start(URL, f"id{i}", 0)
        book.failure(URL, f"f{i}")
    assert (100, 100) == (len(book._runs), len(book._failed_ids))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_with_an_empty_book_and_a_free_lock() -> None:
    """A prefork child decides on its own: its parent's runs, windows and (held) lock are not inherited."""
    book = RunBook(window=60.0)
    assert book.start(URL, "parent-run", 0)
    book._lock.acquire()  # as if another thread held it at fork time
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            ok = book.start(URL, "child-run", 0) and book.coalesced == 0 and "parent-run" not in book._runs
            os._exit(0 if ok else 1)
    finally:
        book._lock.release()
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)


def test_a_run_without_a_recorded_start_is_decided_at_its_finish() -> None:
    """No start ping, no start record: the first success of a window pings, later ones coalesce."""
    book = RunBook(window=60.0)
    assert [True, False, False] == [book.success(URL, f"id{i}") for i in range(3)]
    assert 2 == book.coalesced


def test_a_success_older_than_a_failure_already_decided_never_pings() -> None:
    """Event times, not arrival: a success handed over late must not land after a newer failure."""
    book = RunBook(window=60.0)
    now = time.monotonic()
    assert book.failure(URL, "failed", at=now)
    assert not book.success(URL, "older", at=now - 1.0)
    assert book.success(URL, "newer", at=now + 0.001)  # the first success after the failure always pings
