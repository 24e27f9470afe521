"""BackgroundSender concurrency: bounded parallel deliveries, one per monitor, hosts isolated, order kept."""

from __future__ import annotations

import random
import threading
import time
from contextlib import ExitStack
from typing import Callable

from support import wait_until

from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.providers import WireRequest
from celery_heartbeat.delivery.ping import OutgoingPing
from celery_heartbeat.delivery.sender import BackgroundSender
from celery_heartbeat.delivery.transport import Response
from celery_heartbeat.testing import PingReceiver

MakeSender = Callable[..., BackgroundSender]


class Gate:
    """A fake endpoint: the first request is answered at once, the rest wait until the gate opens."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.flying: list[str] = []
        self.peak = 0
        self.calls = 0
        self.overlaps: list[str] = []  # URLs that had two requests in flight at once
        self.opened = False

    def open(self) -> None:
        with self.cv:
            self.opened = True
            self.cv.notify_all()

    def transport(self) -> GatedTransport:
        return GatedTransport(self)


class GatedTransport:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def send(self, request: WireRequest, timeout: float) -> Response:
        gate = self.gate
        with gate.cv:
            gate.calls += 1
            if gate.calls == 1:
                return Response(200)  # the host has answered: it may now take several at once
            if request.url in gate.flying:
                gate.overlaps.append(request.url)
            gate.flying.append(request.url)
            gate.peak = max(gate.peak, len(gate.flying))
            gate.cv.notify_all()
            gate.cv.wait_for(lambda: gate.opened, timeout=30)
            gate.flying.remove(request.url)
        return Response(200)

    def close(self) -> None:
        pass


def monitor(i: int, host: str = "http://hb.test") -> Monitor:
    return Monitor(f"{host}/m{i}", "healthchecks")


def test_deliveries_run_concurrently_up_to_the_bound_one_per_monitor(make_sender: MakeSender) -> None:
    """30 monitors (two pings each) on one host: 8 requests in flight at once, never two for one monitor;
    the threads go away when idle."""
    gate = Gate()
    sender = make_sender(gate.transport, timeout=5.0, concurrency=8, slow_after=60.0, idle_exit=0.5)
    sender.submit(OutgoingPing(monitor(0), "success"))
    wait_until(lambda: 1 == sender.stats()["sent"])
    for i in range(1, 31):
        sender.submit(OutgoingPing(monitor(i), "start", f"r{i}"))
        sender.submit(OutgoingPing(monitor(i), "success", f"r{i}"))
    with gate.cv:
        assert gate.cv.wait_for(lambda: len(gate.flying) == 8, timeout=10)
    assert 8 == sender.threads()
    gate.open()
    assert sender.flush(10.0)
    assert (8, [], 61) == (gate.peak, gate.overlaps, sender.stats()["sent"])
    wait_until(lambda: 0 == sender.threads())


def test_a_host_that_never_answered_gets_one_attempt_at_a_time(make_sender: MakeSender) -> None:
    """Until a host answers, its monitors are tried one by one: a dead host costs one attempt per round."""
    with PingReceiver() as rx:
        rx.respond(200, delay=30)
        sender = make_sender(timeout=10.0)
        for i in range(5):
            sender.submit(OutgoingPing(monitor(i, rx.base_url), "success"))
        rx.wait_for(1)
        with PingReceiver() as other:  # a barrier: a later ping elsewhere arrived, so the dispatcher ran
            sender.submit(OutgoingPing(monitor(0, other.base_url), "success"))
            other.wait_for(1)
        assert 1 == len(rx.pings)


def test_hanging_hosts_do_not_hold_up_other_hosts(make_sender: MakeSender) -> None:
    """Two hosts that answered, then hang at the same moment with many pings pending, and a host that never
    answers: a fourth host's pings are delivered while every attempt to the first three still hangs."""
    with ExitStack() as stack:
        went_silent = [stack.enter_context(PingReceiver(host=f"127.0.0.{n}")) for n in (2, 3)]
        never_answers = stack.enter_context(PingReceiver(host="127.0.0.4"))
        healthy = stack.enter_context(PingReceiver())
        sender = make_sender(timeout=20.0)
        for rx in went_silent:
            sender.submit(OutgoingPing(monitor(0, rx.base_url), "success"))
        assert sender.flush(5.0)
        for rx in [*went_silent, never_answers]:
            rx.respond(200, delay=60)
        for i in range(12):
            for rx in [*went_silent, never_answers]:
                sender.submit(OutgoingPing(monitor(i, rx.base_url), "start", f"r{i}"))
        for rx in went_silent:
            rx.wait_for(1 + 8)  # as many in flight as the concurrency allows
        never_answers.wait_for(1)
        for i in range(5):
            sender.submit(OutgoingPing(monitor(i, healthy.base_url), "success"))
        healthy.wait_for(5, timeout=15)
        wait_until(lambda: 7 == sender.stats()["sent"])
        assert 0 == sender.stats()["failed"]  # no hanging attempt has ended: nobody waited for one
        assert 8 + 8 + 1 <= sender.threads() <= 24


def test_each_monitor_sees_its_events_in_order_across_an_outage(make_sender: MakeSender) -> None:
    """20 monitors, random runs, an outage of failing answers: each monitor gets a subsequence of its events
    in the order they happened, ending with its last event; Cronitor's stamp carries each event's time."""
    rng = random.Random(7)
    with PingReceiver() as rx:
        sender = make_sender(timeout=2.0)
        rx.respond(500)
        submitted: dict[str, list[str]] = {}
        for n in range(400):
            name = f"m{rng.randrange(20)}"
            kind = rng.choice(["start", "success", "success", "failure"])
            run = f"{name}-{n:04d}"
            submitted.setdefault(name, []).append(run)
            sender.submit(OutgoingPing(Monitor(rx.url(name), "cronitor"), kind, run))  # type: ignore[arg-type]
        wait_until(lambda: sender.stats()["failed"] >= 20)
        rx.healthy()
        recovered = time.time()
        assert sender.flush(10.0)
    for name, runs in submitted.items():
        got = [p for p in rx.pings_for(name) if p.status == 200 and p.time >= recovered]
        series = [p.query["series"] for p in got]
        assert series == sorted(series), name  # run ids are numbered in event order
        assert runs[-1] == series[-1], name
        stamps = [float(p.query["stamp"]) for p in got]
        assert stamps == sorted(stamps) and stamps[-1] < recovered
