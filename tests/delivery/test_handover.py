"""The hand-over channel from pool processes to the worker's main process, without a worker.

Real forked processes and a real socket pair; the worker-level story (order after
an outage on a prefork worker) is in tests/test_ordering.py.
"""

from __future__ import annotations

import os
import socket
import threading
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
