"""Duplicate-beat detection logic: two beats that each dispatch after hearing the other are duplicates.

These tests drive `DuplicateDetector` with a fake clock and hand-delivered announcements,
so each scenario (interleaving, restart, lock hand-over, late or lost messages) is exact.
The subprocess tests in test_duplicate_beats.py run the same scenarios on real brokers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery, signals
from celery.beat import Service
from celery.contrib.testing.worker import start_worker

import celery_heartbeat
from celery_heartbeat import ConfigurationError, install_beat_liveness
from celery_heartbeat._state import peek
from celery_heartbeat._tasks import BEAT_TASK
from celery_heartbeat.beat.announcer import BeatWatch
from celery_heartbeat.beat.duplicates import (
    HEADER,
    Announcement,
    BeatInstance,
    DuplicateDetector,
    Verdict,
    describe,
    duplicate_beats,
)
from celery_heartbeat.testing import PingReceiver

PERIOD = 60.0


def beat_watch(app: Celery) -> object:
    """The duplicate-beat detection running for `app` in this process, if any."""
    state = peek(app)
    return state.beat_watch if state is not None else None


class Records(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(name: str, pid: int, clock: Clock) -> DuplicateDetector:
    return DuplicateDetector(BeatInstance(f"id-{name}", name, pid), PERIOD, clock)


def deliver(verdict: Verdict, *to: DuplicateDetector) -> None:
    """The announcement reaches the other beats (through the broker, in real life)."""
    for detector in to:
        detector.heard(verdict.announcement)


def test_two_beats_dispatching_alternately_both_find_each_other_within_two_rounds() -> None:
    """Interleaved dispatches: the first beat alarms at its next dispatch, the second one at its next."""
    clock = Clock()
    a, b = make("host-a", 101, clock), make("host-b", 202, clock)
    deliver(a.dispatching(), b)  # a alone so far
    clock.now += 20
    first_b = b.dispatching()  # b dispatches after hearing a: one half of the evidence
    assert () == first_b.duplicates
    deliver(first_b, a)
    clock.now += 40
    second_a = a.dispatching()  # a dispatches after hearing b, who had heard a: duplicates
    assert [b.me] == list(second_a.duplicates)
    assert [b.me] == list(second_a.appeared)
    assert ["host-a (pid 101)", "host-b (pid 202)"] == second_a.header()
    deliver(second_a, b)
    clock.now += 20
    second_b = b.dispatching()
    assert ["host-b (pid 202)", "host-a (pid 101)"] == second_b.header()
    for _ in range(5):  # it stays so while both dispatch
        clock.now += 40
        va = a.dispatching()
        deliver(va, b)
        clock.now += 20
        vb = b.dispatching()
        deliver(vb, a)
        assert (1, 1, (), ()) == (len(va.duplicates), len(vb.duplicates), va.appeared, vb.gone)


def test_two_beats_dispatching_at_the_same_instant_are_found_too() -> None:
    """Same phase (both started from one schedule file): each hears the other just after its own dispatch."""
    clock = Clock()
    a, b = make("a", 1, clock), make("b", 2, clock)
    verdicts = []
    for _ in range(4):
        clock.now += PERIOD
        va, vb = a.dispatching(), b.dispatching()
        deliver(va, b)
        deliver(vb, a)
        verdicts.append((bool(va.duplicates), bool(vb.duplicates)))
    assert [(False, False), (False, False), (True, True), (True, True)] == verdicts


def test_a_restart_never_alarms() -> None:
    """Stop, then start: the new beat never hears the old one dispatch after its own first dispatch."""
    clock = Clock()
    old = make("host", 7, clock)
    for _ in range(3):
        clock.now += PERIOD
        old.dispatching()  # nobody else listens yet
    new = DuplicateDetector(BeatInstance("id-new", "host", 7), PERIOD, clock)  # same host, same pid (container)
    for _ in range(5):
        clock.now += PERIOD
        assert () == new.dispatching().duplicates


def test_a_lock_hand_over_never_alarms_even_when_the_standby_heard_the_holder() -> None:
    """RedBeat: the standby hears the holder for a while, the holder dies, the standby takes over: no alarm."""
    clock = Clock()
    holder, standby = make("holder", 1, clock), make("standby", 2, clock)
    for _ in range(4):
        clock.now += PERIOD
        deliver(holder.dispatching(), standby)
    last = holder.dispatching()  # its very last dispatch, delivered late: after the standby took over
    clock.now += 10
    verdicts = [standby.dispatching()]
    deliver(last, standby)
    for _ in range(4):
        clock.now += PERIOD
        verdicts.append(standby.dispatching())
    assert [()] * 5 == [v.duplicates for v in verdicts]


def test_a_late_announcement_from_before_the_other_started_cannot_fake_a_duplicate() -> None:
    """An announcement that names no dispatch of ours is not evidence, however late or often it arrives."""
    clock = Clock()
    a, b = make("a", 1, clock), make("b", 2, clock)
    stale = b.dispatching()  # b never heard a
    for _ in range(3):
        clock.now += PERIOD
        deliver(stale, a)  # re-delivered: ignored after the first time
        assert () == a.dispatching().duplicates


def test_success_resumes_by_the_third_dispatch_after_the_other_beat_stops() -> None:
    """The survivor forgets a beat that let two of its dispatches pass unheard, and says so."""
    clock = Clock()
    a, b = make("a", 1, clock), make("b", 2, clock)
    for _ in range(3):
        clock.now += 30
        deliver(a.dispatching(), b)
        clock.now += 30
        deliver(b.dispatching(), a)
    assert a.dispatching().duplicates  # b's last dispatch came just before this one
    after_stop = []
    for _ in range(3):  # b stopped: a dispatches alone
        clock.now += PERIOD
        after_stop.append(a.dispatching())
    assert [True, False, False] == [bool(v.duplicates) for v in after_stop]
    assert (b.me,) == after_stop[1].gone


def test_one_lost_announcement_does_not_clear_the_alarm() -> None:
    """Redis pub/sub drops messages during a reconnect: one missing announcement keeps the verdict."""
    clock = Clock()
    a, b = make("a", 1, clock), make("b", 2, clock)
    history = []
    for round_ in range(8):
        clock.now += 30
        va = a.dispatching()
        deliver(va, b)
        clock.now += 30
        vb = b.dispatching()
        if round_ != 4:
            deliver(vb, a)
        history.append(bool(va.duplicates))
    assert [False, True, True, True, True, True, True, True] == history


def test_a_beat_that_was_silent_for_long_does_not_count_old_news_as_a_duplicate() -> None:
    """A beat that stops dispatching (lost its lock) and resumes much later is no duplicate of its successor."""
    clock = Clock()
    a, b = make("a", 1, clock), make("b", 2, clock)
    for _ in range(2):
        clock.now += PERIOD
        deliver(a.dispatching(), b)
    for _ in range(10):  # b took over; a keeps listening without dispatching
        clock.now += PERIOD
        deliver(b.dispatching(), a)
    # b dies now; a gets the lock back at its next period.
    clock.now += PERIOD
    assert () == a.dispatching().duplicates


def test_three_beats_are_all_named() -> None:
    """Every beat dispatching the schedule is named in the alert, this one first."""
    clock = Clock()
    beats = [make(f"h{i}", i, clock) for i in range(3)]
    last: list[Verdict] = []
    for _ in range(3):
        last = []
        for beat in beats:
            clock.now += 20
            verdict = beat.dispatching()
            deliver(verdict, *(other for other in beats if other is not beat))
            last.append(verdict)
    assert ["h0 (pid 0)", "h1 (pid 1)", "h2 (pid 2)"] == sorted(last[0].header() or [])
    assert "h0 (pid 0)" == (last[0].header() or [""])[0]


def test_announcements_round_trip_and_junk_is_ignored() -> None:
    """A message body becomes an announcement only when it has the right shape."""
    announcement = Announcement(BeatInstance("x", "host", 3), 5, {"y": 2})
    assert announcement == Announcement.from_body(announcement.to_body())
    junks: list[object] = [None, [], {"v": 2}, {"v": 1, "id": "x"}, {**announcement.to_body(), "seq": "5"}]
    for junk in junks:
        assert None is Announcement.from_body(junk)


def test_the_worker_reads_the_header_from_the_task_request() -> None:
    """The liveness task sees the beats named in its message's header (absent, or one beat: none)."""
    assert ["a (pid 1)", "b (pid 2)"] == list(duplicate_beats(SimpleNamespace(**{HEADER: ["a (pid 1)", "b (pid 2)"]})))
    assert ["a", "b"] == list(duplicate_beats(SimpleNamespace(headers={HEADER: ["a", "b"]})))
    assert [] == list(duplicate_beats(SimpleNamespace()))
    assert [] == list(duplicate_beats(SimpleNamespace(**{HEADER: ["a (pid 1)"]})))
    assert "2 celery beats are dispatching the same schedule: a, b" == describe(["a", "b"])


def test_a_liveness_message_naming_two_beats_makes_the_worker_send_a_failure_ping_naming_them(
    make_app: Callable[..., Celery],
) -> None:
    """The beat's verdict travels in the message: the worker pings /fail with the alert and logs an ERROR."""
    app = make_app()
    handler = Records(logging.ERROR)
    records = handler.records
    logging.getLogger("celery_heartbeat").addHandler(handler)  # Celery's worker may hijack the root logger
    with PingReceiver() as rx, contextlib.ExitStack() as stack:
        stack.callback(logging.getLogger("celery_heartbeat").removeHandler, handler)
        celery_heartbeat.install(app)
        install_beat_liveness(app, {"url": rx.url("beat"), "provider": "healthchecks"}, every=60)
        with start_worker(app, pool="solo", perform_ping_check=False):
            app.send_task(BEAT_TASK, headers={HEADER: ["host-a (pid 1)", "host-b (pid 2)"]})
            app.send_task(BEAT_TASK)  # one beat again: a success, after it (the solo pool keeps the order)
            rx.wait_for(2, name="beat")
    assert ["/beat/fail", "/beat"] == [p.path for p in rx.pings_for("beat")]
    alert = "2 celery beats are dispatching the same schedule: host-a (pid 1), host-b (pid 2)"
    assert alert.encode() == rx.pings_for("beat")[0].body
    assert [f"celery-heartbeat: {alert}; every periodic task is sent more than once"] == [
        r.getMessage() for r in records
    ]


def test_a_monitor_without_failure_pings_gets_silence_not_a_success(make_app: Callable[..., Celery]) -> None:
    """A generic URL has no failure signal: while beats are duplicated nothing is sent, so the monitor goes late."""
    app = make_app()
    with PingReceiver() as rx:
        celery_heartbeat.install(app)
        install_beat_liveness(app, rx.url("beat"), every=60)
        with start_worker(app, pool="solo", perform_ping_check=False):
            app.send_task(BEAT_TASK, headers={HEADER: ["host-a (pid 1)", "host-b (pid 2)"]})
            app.send_task(BEAT_TASK)
            rx.wait_for(1, name="beat")
    assert ["/beat"] == [p.path for p in rx.pings_for("beat")]  # the sentinel's success only


@pytest.mark.parametrize("detect", [True, False])
def test_detection_starts_when_beat_starts_unless_turned_off(
    make_app: Callable[..., Celery], tmp_path: Path, detect: bool
) -> None:
    """beat_init starts detection; `heartbeat_detect_duplicate_beats = False` starts nothing."""
    app = make_app(heartbeat_detect_duplicate_beats=detect)
    install_beat_liveness(app, "https://hc-ping.com/abc-beat", every=5)
    assert None is beat_watch(app)  # nothing at install
    service = Service(app, schedule_filename=str(tmp_path / "schedule"))
    try:
        signals.beat_init.send(sender=service)
        watch = beat_watch(app)
        assert detect == isinstance(watch, BeatWatch)
    finally:
        if isinstance(watch, BeatWatch):
            watch.stop()
        service.scheduler.close()


def test_the_setting_is_validated(make_app: Callable[..., Celery]) -> None:
    """A value that is not a boolean is a ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(make_app(), detect_duplicate_beats="maybe")
    assert "heartbeat_detect_duplicate_beats" == info.value.key
    handle = celery_heartbeat.install(make_app(heartbeat_detect_duplicate_beats="false"))
    assert False is handle.settings.detect_duplicate_beats
