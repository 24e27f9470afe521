"""The hand-over channel from pool processes to the worker's main process, without a worker.

Real forked processes and a real socket pair; the worker-level story (order after
an outage on a prefork worker) is in tests/test_ordering.py.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from celery import Celery

import celery_heartbeat
from celery_heartbeat import Monitor
from celery_heartbeat.delivery.handover import Handover, Route, RunEvent
from celery_heartbeat.testing import PingReceiver

MONITOR = Monitor(url="https://hc-ping.com/0f0e0d0c-secret", provider="healthchecks", start=True)


class Applied:
    """Records what the main process applied, in order; can hold the reader up."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, event: RunEvent) -> None:
        self.release.wait(30)
        self.events.append(event)


@pytest.fixture
def applied() -> Applied:
    return Applied()


@pytest.fixture
def handover(applied: Applied) -> Iterator[Handover]:
    channel = Handover(applied)
    channel.open()
    yield channel
    applied.release.set()
    channel.close(5.0)


def in_child(action: object) -> int:
    """Run `action()` in a forked process; its exit code (0: it returned True)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = 0 if action() else 2  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_an_event_is_compact_and_crosses_intact() -> None:
    """An event carries the monitor, run and event time in well under 200 bytes; junk decodes to None."""
    event = RunEvent("failure", MONITOR, "d0c3b1a2-5e6f-4a7b-8c9d-0e1f2a3b4c5d", retries=2, detail="ValueError")
    data = event.encode()
    assert len(data) < 200
    assert event == RunEvent.decode(data)
    assert [None, None, None] == [RunEvent.decode(b) for b in (b"", b"[1,2]", b'["boom","u","generic",0,0,"r",0,0,0]')]


def test_events_from_several_processes_are_applied_in_hand_over_order(handover: Handover, applied: Applied) -> None:
    """Two forked pool processes, then the main process itself: the main process applies them in that order."""
    first = RunEvent("success", MONITOR, "run-1")
    second = RunEvent("failure", MONITOR, "run-2", detail="KeyError")
    own = RunEvent("failure", MONITOR, "run-3", detail="TimeLimitExceeded")
    assert 0 == in_child(lambda: handover.offer(first) is Route.HANDED)
    assert 0 == in_child(lambda: handover.offer(second) is Route.HANDED)
    assert Route.HANDED is handover.offer(own)
    assert handover.drain(10.0)
    assert [first, second, own] == applied.events


def test_a_full_channel_never_blocks_the_task_it_falls_back(handover: Handover, applied: Applied) -> None:
    """With the main process's reader held up, hand-overs fail over to local delivery instead of waiting."""
    applied.release.clear()
    routes = []
    for i in range(100_000):
        routes.append(handover.offer(RunEvent("success", MONITOR, f"run-{i}")))
        if routes[-1] is not Route.HANDED:
            break
    assert Route.LOCAL is routes[-1]
    assert len(routes) > 100  # the channel did buffer events before filling up
    applied.release.set()
    assert handover.drain(10.0)
    assert len(routes) - 1 == len(applied.events)


PLAIN = Monitor(url="https://hc-ping.com/0f0e0d0c-plain", provider="healthchecks")  # no start pings


def successes(count: int, prefix: str = "run") -> list[RunEvent]:
    return [RunEvent("success", PLAIN, f"{prefix}-{i}") for i in range(count)]


def test_a_pool_process_hands_over_one_success_per_window_then_the_latest(handover: Handover, applied: Applied) -> None:
    """Inside its coalescing window a pool process sends the first success at once and holds the rest;
    the latest one held goes over when the window ends (the first success after another process's
    failure must still reach the main process)."""
    runs = successes(5)

    def pool_process() -> bool:
        routes = [handover.offer(event, 0.5) for event in runs]
        time.sleep(1.0)  # the window ends while this process lives
        return all(route is Route.HANDED for route in routes)

    assert 0 == in_child(pool_process)
    assert handover.drain(10.0)
    assert ["run-0", "run-4"] == [e.run_id for e in applied.events]


def test_a_pool_process_failure_discards_the_success_it_held(handover: Handover, applied: Applied) -> None:
    """A held success is older than the process's own failure: it never follows it."""
    failure = RunEvent("failure", PLAIN, "run-x", detail="KeyError")

    def pool_process() -> bool:
        routes = [handover.offer(event, 0.3) for event in [*successes(2), failure]]
        time.sleep(0.6)
        return all(route is Route.HANDED for route in routes)

    assert 0 == in_child(pool_process)
    assert handover.drain(10.0)
    assert ["run-0", "run-x"] == [e.run_id for e in applied.events]


def test_after_a_failure_anywhere_a_pool_process_sends_its_next_success_at_once(
    handover: Handover, applied: Applied
) -> None:
    """The recovery is not held for a window: after another process's failure (here the main process's,
    a hard time limit), a pool process's next success crosses at once."""
    first, recovered = successes(2)
    failure = RunEvent("failure", PLAIN, "run-x", detail="TimeLimitExceeded")
    ready, go = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the pool process
        handover.offer(first, 60.0)
        os.write(ready[1], b"1")
        os.read(go[0], 1)  # the failure happened meanwhile
        handover.offer(recovered, 60.0)
        os._exit(0 if not handover._held else 3)
    os.read(ready[0], 1)
    assert Route.HANDED is handover.offer(failure)
    os.write(go[1], b"1")
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    assert handover.drain(10.0)
    assert ["run-0", "run-x", "run-1"] == [e.run_id for e in applied.events]
    for fd in (*ready, *go):
        os.close(fd)


def test_an_exiting_pool_process_hands_over_what_it_held(handover: Handover, applied: Applied) -> None:
    """worker_process_shutdown: what is held goes over now, not when a 60 s window would end."""

    def pool_process() -> bool:
        routes = [handover.offer(event, 60.0) for event in successes(3)]
        handover.release_held()
        return all(route is Route.HANDED for route in routes)

    assert 0 == in_child(pool_process)
    assert handover.drain(10.0)
    assert ["run-0", "run-2"] == [e.run_id for e in applied.events]


class Refusing:
    """A channel end whose buffer is full."""

    def send(self, data: bytes) -> int:
        raise BlockingIOError


def test_a_run_stays_whole_when_a_hand_over_fails(handover: Handover) -> None:
    """In a pool process: a finish follows its start's route; one whose start was handed over but which cannot
    follow it is owed (sent whatever local coalescing says)."""

    def story() -> bool:
        working = handover._send
        assert Route.HANDED is handover.offer(RunEvent("start", MONITOR, "handed"))
        handover._send = Refusing()  # type: ignore[assignment]
        owed = handover.offer(RunEvent("success", MONITOR, "handed"))
        local_start = handover.offer(RunEvent("start", MONITOR, "local"))
        handover._send = working  # room again: the run still finishes where it started
        local_finish = handover.offer(RunEvent("failure", MONITOR, "local"))
        return (owed, local_start, local_finish) == (Route.OWED, Route.LOCAL, Route.LOCAL)

    assert 0 == in_child(story)


def test_after_close_events_stay_in_the_main_process(handover: Handover, applied: Applied) -> None:
    """Closing applies what was handed over, stops the reader, and later events are decided locally."""
    assert Route.HANDED is handover.offer(RunEvent("success", MONITOR, "before"))
    assert handover.close(5.0)
    assert ["before"] == [e.run_id for e in applied.events]
    assert Route.LOCAL is handover.offer(RunEvent("success", MONITOR, "after"))
    assert "celery-heartbeat-handover" not in [t.name for t in threading.enumerate()]


def test_without_a_channel_nothing_is_handed_over() -> None:
    """Solo, threads, gevent, eventlet: no channel is ever opened, every event is decided where it happened."""
    channel = Handover(lambda event: None)
    assert Route.LOCAL is channel.offer(RunEvent("start", MONITOR, "r"))
    assert channel.drain(0.0) and channel.close(0.0)


def test_an_owed_success_is_sent_although_this_process_would_coalesce_it(make_app: object) -> None:
    """Hooks.apply: an owed finish (its start went out from the main process) pings inside the coalescing window."""
    with PingReceiver() as rx:
        app: Celery = make_app()  # type: ignore[operator]
        monitor = Monitor(url=rx.url("job"), provider="healthchecks")
        hb = celery_heartbeat.install(app, urls={"job": monitor.url}, coalesce_seconds=60)
        one, two, three = (str(uuid.uuid4()) for _ in range(3))
        hb._hooks.apply(RunEvent("start", monitor, one))
        hb._hooks.apply(RunEvent("success", monitor, one))
        assert hb.flush(10.0)
        hb._hooks.apply(RunEvent("success", monitor, two))  # coalesced: inside the window
        hb._hooks.apply(RunEvent("success", monitor, three), owed=True)
        assert hb.flush(10.0)
        assert [one, three] == [p.query["rid"] for p in rx.pings_for("job")]


def test_the_channel_is_a_local_datagram_socket_pair(handover: Handover) -> None:
    """What pool processes inherit: a non-blocking AF_UNIX datagram socket (no network)."""
    sock = handover._send
    assert sock is not None
    assert (socket.AF_UNIX, socket.SOCK_DGRAM, False) == (sock.family, sock.type, sock.getblocking())


@pytest.mark.parametrize(("send_start", "crossing"), [(False, ["success"]), (True, ["start", "success"])])
def test_a_run_crosses_once_unless_its_start_pings(make_app: object, send_start: bool, crossing: list[str]) -> None:
    """The task's own cost: a run whose monitor sends no start ping hands over its finish only."""
    app: Celery = make_app()  # type: ignore[operator]

    @app.task(name="proj.job", shared=False)
    def job() -> None: ...

    hb = celery_heartbeat.install(app, urls={"proj.job": "https://hc-ping.com/uuid"}, send_start=send_start)
    applied = Applied()
    channel = hb._hooks.handover = Handover(applied)
    channel.open()
    try:
        task, run_id = app.tasks["proj.job"], str(uuid.uuid4())
        task.push_request(id=run_id, retries=0)
        try:
            hb._hooks.on_prerun(sender=task, task_id=run_id, task=task)
            hb._hooks.on_success(sender=task, result=None)
        finally:
            task.pop_request()
        assert channel.drain(5.0)
        assert crossing == [event.kind for event in applied.events]
    finally:
        channel.close(5.0)
        hb.uninstall()


def test_a_success_arriving_after_a_newer_failure_never_pings(make_app: object) -> None:
    """Hooks.apply goes by event time: a success handed over late (held in a pool process) that happened
    before a failure already applied is dropped, so the monitor stays down."""
    with PingReceiver() as rx:
        app: Celery = make_app()  # type: ignore[operator]
        monitor = Monitor(url=rx.url("job"), provider="healthchecks")
        hb = celery_heartbeat.install(app, urls={"job": monitor.url}, coalesce_seconds=60)
        failed, older, newer = (str(uuid.uuid4()) for _ in range(3))
        now = time.monotonic()
        hb._hooks.apply(RunEvent("failure", monitor, failed, detail="KeyError", created=now))
        hb._hooks.apply(RunEvent("success", monitor, older, created=now - 1.0))
        hb._hooks.apply(RunEvent("success", monitor, newer, created=now + 0.001))
        assert hb.flush(10.0)
        assert [failed, newer] == [p.query["rid"] for p in rx.pings_for("job")]
