"""Delivery under faults: real workers against a real endpoint playing each fault.

Every fault is played by a real local HTTP endpoint (or a closed port, an
unresolvable host, TLS spoken to a plain-HTTP port). Through a worker, each
must leave tasks untouched (normal results, no slowdown, no traceback in the
worker's log), log the trouble once with the URL redacted, keep pending pings
bounded, and deliver once the endpoint recovers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from support import wait_until

import celery_heartbeat
from celery_heartbeat.testing import PingReceiver

SECRET = "6e1fbf8f-cd5c-4a9c-b3b2-secret"


# -- through a real worker ------------------------------------------------------------------


class Records(logging.Handler):
    """Every record the worker's loggers emit during a test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def worker_log() -> Iterator[Records]:
    """Collects records from the `celery` and `celery_heartbeat` loggers (Celery may hijack the root)."""
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("celery", "celery_heartbeat")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in zip(loggers, levels):
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class Fault:
    url: str
    timeout: float = 0.5
    #: Makes the endpoint healthy; returns the receiver that will then get the pings.
    recover: Callable[[], PingReceiver] | None = None
    logs_trouble: bool = True
    send_start: bool = True


def arrange(fault: str, rx: PingReceiver, free_port: int, stack: ExitStack) -> Fault:
    """Make the endpoint misbehave as `fault` says."""

    def healthy() -> PingReceiver:
        rx.healthy()
        return rx

    if fault == "refused":
        return Fault(
            f"http://127.0.0.1:{free_port}/{SECRET}",
            recover=lambda: stack.enter_context(PingReceiver(port=free_port)),
        )
    if fault == "http_500":
        rx.respond(500)
    elif fault == "429_retry_after":
        rx.respond(429, headers={"Retry-After": "1"})
    elif fault == "hang":
        rx.respond(200, delay=10)
    elif fault == "reset":
        rx.reset_connections()
    elif fault == "latency_2s":
        rx.respond(200, delay=2.0)
        # Every request takes 2 s: success pings only, so the flush waits for one or two.
        return Fault(rx.url(SECRET), timeout=3.0, recover=lambda: rx, logs_trouble=False, send_start=False)
    elif fault == "unresolvable":
        return Fault(f"http://heartbeat.example.invalid/{SECRET}")
    elif fault == "tls_to_plain_http":
        return Fault(f"https://127.0.0.1:{rx.port}/{SECRET}")
    return Fault(rx.url(SECRET), recover=healthy)


@dataclass
class Worker:
    app: Celery
    add: Any
    slow: Any


def run_batch(add: Any) -> tuple[list[Any], float]:
    """40 tasks, then one more after them all; their results and the seconds taken."""
    started = time.monotonic()
    results = [add.delay(i, i) for i in range(40)]
    values = [r.get(timeout=10, interval=0.01) for r in results]
    last = add.delay(1, 1)
    values.append(last.get(timeout=10, interval=0.01))
    assert [2 * i for i in range(40)] + [2] == values
    return [*results, last], time.monotonic() - started


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    """One in-process threads worker on memory:// for the module (stopping one takes seconds)."""
    name = f"faults{uuid.uuid4().hex[:8]}"
    app = Celery(name, broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.broker_transport_options = {"polling_interval": 0.01}
    app.conf.task_default_queue = name

    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.slow")
    def slow(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=15):
        run_batch(add)  # warm up
        yield Worker(app, add, slow)


FAULTS = ["refused", "http_500", "429_retry_after", "hang", "latency_2s", "reset", "unresolvable", "tls_to_plain_http"]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_sick_endpoint_never_touches_tasks_and_pings_resume_on_recovery(
    fault: str, worker: Worker, heartbeat_receiver: PingReceiver, free_port: int, worker_log: Records
) -> None:
    """Tasks succeed with normal results; trouble is logged once, redacted; pings resume."""
    add = worker.add
    with ExitStack() as stack:
        setup = arrange(fault, heartbeat_receiver, free_port, stack)
        hb = celery_heartbeat.install(
            worker.app,
            urls={"proj.add": {"url": setup.url, "provider": "healthchecks"}},
            send_start=setup.send_start,
            coalesce_seconds=0,
            timeout=setup.timeout,
            max_attempts=2,
            backoff_max=0.5,
            shutdown_timeout=1.0,
        )
        stack.callback(hb.uninstall)
        results, _ = run_batch(add)  # normal results, checked inside
        last = results[-1]  # after every other run: its finish is the newest ping
        # No timing here (benchmarks/overhead.py measures speed): on Celery 5.3 the memory transport makes
        # the same batch take 0.1 s, 2 s or 4 s by poll phase alone, with or without the library.
        assert hb.stats()["pending"] <= 3 + 2  # start, success, failure; a start in flight and its finish
        if setup.logs_trouble:
            wait_until(lambda: hb.stats()["failed"] >= 1)
        if fault == "429_retry_after":  # before a flush, which tries every URL once more at once
            first_429, after = (p.time for p in heartbeat_receiver.wait_for(2, timeout=5)[:2])
            assert after - first_429 >= 0.95
        if setup.recover is not None:
            target = setup.recover()
            recovered = time.time()
            assert hb.flush(10.0)
            delivered = [p for p in target.pings if p.time >= recovered and p.status == 200]
            assert last.id in {p.query.get("rid") for p in delivered if p.is_success}

    assert [] == [r for r in worker_log.records if r.exc_info or r.levelno >= logging.ERROR]
    ours = [r.getMessage() for r in worker_log.records if r.name == "celery_heartbeat"]
    trouble = [m for m in ours if "cannot deliver pings" in m]
    assert (1 if setup.logs_trouble else 0) == len(trouble)
    assert not any(SECRET in m or SECRET[:8] in m for m in ours)
    if setup.logs_trouble:
        assert "/6e1f…" in trouble[0]


def test_every_run_whose_start_arrived_gets_its_finish_across_an_outage(
    worker: Worker, heartbeat_receiver: PingReceiver
) -> None:
    """Starts delivered, then the endpoint fails: later runs coalesce, yet each started run gets its finish."""
    rx = heartbeat_receiver
    hb = celery_heartbeat.install(
        worker.app,
        urls={"proj.slow": {"url": rx.url("runs"), "provider": "healthchecks"}},
        send_start=True,
        coalesce_seconds=0,
        timeout=0.5,
        max_attempts=1,
        backoff_max=0.5,
    )
    try:
        first = []
        for i in range(3):  # overlapping runs (four threads), each start delivered before the next run
            first.append(worker.slow.delay(1.0))
            rx.wait_for(i + 1, predicate=lambda p: p.path.endswith("/start"))
        rx.respond(500)  # the monitor falls over before they finish
        assert [1.0] * 3 == [r.get(timeout=10, interval=0.01) for r in first]
        during = [worker.slow.delay(0.0) for _ in range(10)]
        assert [0.0] * 10 == [r.get(timeout=10, interval=0.01) for r in during]
        wait_until(lambda: hb.stats()["failed"] >= 1)
        rx.healthy()
        assert hb.flush(10.0)
    finally:
        hb.uninstall()
    answered = [p for p in rx.pings if p.status == 200]
    started = {p.query["rid"] for p in answered if p.path.endswith("/start")}
    finished = {p.query["rid"] for p in answered if p.is_success}
    assert {r.id for r in first} <= started
    assert set() == started - finished
