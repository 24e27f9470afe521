"""What a real worker sends: the signal hooks' semantics, end to end over real HTTP.

One in-process worker (memory broker, threads pool) serves the whole module;
each test installs its own mapping, which replaces the previous one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker

import celery_heartbeat
from celery_heartbeat import Heartbeat
from celery_heartbeat._heartbeat import installed
from celery_heartbeat.testing import Ping, PingReceiver


class InFlight:
    """Runs of the story app between task_prerun and task_postrun.

    A caller's `.get()` returns once the result is stored, which Celery does BEFORE it fires
    task_success / task_failure: a test must wait for task_postrun (every signal of the run has
    fired, so every ping is queued) before it flushes and looks at what arrived.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.count = 0
        self.idle = threading.Condition()

    def prerun(self, task: Any = None, **_: Any) -> None:
        if task is not None and task.app is self.app:
            with self.idle:
                self.count += 1

    def postrun(self, task: Any = None, **_: Any) -> None:
        if task is not None and task.app is self.app:
            with self.idle:
                self.count -= 1
                self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.count == 0, timeout)


@dataclass
class Story:
    app: Celery
    rx: PingReceiver
    tasks: dict[str, Any]
    in_flight: InFlight

    def settle(self, hb: Heartbeat) -> None:
        """Wait until every run has fired all its signals, then until every ping queued has been delivered."""
        assert self.in_flight.wait_idle(10.0)
        assert hb.flush(10.0)

    def install(self, urls: dict[str, Any], **settings: Any) -> Heartbeat:
        settings.setdefault("coalesce_seconds", 0)
        return celery_heartbeat.install(self.app, urls=urls, **settings)

    def run(self, name: str, *args: Any) -> Any:
        return self.tasks[name].delay(*args).get(timeout=15, interval=0.01)


def _define_tasks(app: Celery, rx: PingReceiver) -> dict[str, Any]:
    attempts: list[int] = []

    @app.task(name="proj.mapped")
    def mapped() -> int:
        return 7

    @app.task(name="proj.unmapped")
    def unmapped() -> int:
        return 8

    @app.task(name="proj.reports.daily")
    def daily() -> None: ...

    @app.task(name="proj.reports.weekly", heartbeat=rx.url("weekly-option"))
    def weekly() -> None: ...

    @app.task(name="proj.reports.monthly", heartbeat=rx.url("monthly-option"))
    def monthly() -> None: ...

    @app.task(name="proj.echo")
    def echo(secret: str) -> str:
        return f"{secret}-result"

    @app.task(name="proj.broken")
    def broken(secret: str) -> None:
        raise KeyError(secret)

    @app.task(name="proj.flaky", bind=True, max_retries=5, default_retry_delay=0)
    def flaky(self: Any) -> list[int]:
        attempts.append(self.request.retries)
        if self.request.retries < 2:
            raise self.retry(exc=ConnectionError("flaky"), countdown=0)
        return list(attempts)

    @app.task(name="proj.doomed", autoretry_for=(ValueError,), max_retries=2, default_retry_delay=0)
    def doomed() -> None:
        raise ValueError("always")

    @app.task(name="proj.sometimes")
    def sometimes(fail: bool) -> None:
        if fail:
            raise RuntimeError("boom")

    @app.task(name="proj.double")
    def double(x: int) -> int:
        time.sleep(0.01)
        return x * 2

    return {
        "mapped": mapped,
        "unmapped": unmapped,
        "daily": daily,
        "weekly": weekly,
        "monthly": monthly,
        "echo": echo,
        "broken": broken,
        "flaky": flaky,
        "doomed": doomed,
        "sometimes": sometimes,
        "double": double,
        "_attempts": attempts,
    }


@pytest.fixture(scope="module")
def module_story() -> Iterator[Story]:
    with PingReceiver() as rx:
        app = Celery("hooks_story", broker="memory://", backend="cache+memory://", set_as_current=False)
        app.conf.broker_transport_options = {"polling_interval": 0.01}
        tasks = _define_tasks(app, rx)
        in_flight = InFlight(app)
        signals.task_prerun.connect(in_flight.prerun, weak=False)
        signals.task_postrun.connect(in_flight.postrun, weak=False)
        try:
            with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=15):
                yield Story(app, rx, tasks, in_flight)
        finally:
            signals.task_prerun.disconnect(in_flight.prerun)
            signals.task_postrun.disconnect(in_flight.postrun)


@pytest.fixture
def story(module_story: Story) -> Iterator[Story]:
    module_story.rx.clear()
    module_story.rx.healthy()
    module_story.tasks["_attempts"].clear()
    yield module_story
    handle = installed(module_story.app)
    if handle is not None:
        handle.uninstall()


def targets(pings: list[Ping]) -> list[str]:
    return [f"{p.method} {p.path}" for p in pings]


def test_mapped_success_sends_exactly_one_success_ping(story: Story) -> None:
    """A mapped task that succeeds pings its URL once; an unmapped task pings nothing."""
    hb = story.install({"proj.mapped": story.rx.url("mapped")})
    assert 8 == story.run("unmapped")
    assert 7 == story.run("mapped")
    story.settle(hb)
    assert ["GET /mapped"] == targets(story.rx.pings)


def test_success_ping_carries_neither_the_arguments_nor_the_result(story: Story) -> None:
    """A task's arguments and return value never reach the monitor: the success ping is the bare URL."""
    hb = story.install({"proj.echo": {"url": story.rx.url("echo"), "provider": "healthchecks"}})
    assert "s3cr3t-argument-result" == story.run("echo", "s3cr3t-argument")
    story.settle(hb)
    (ping,) = story.rx.pings
    assert ("GET", "/echo", b"") == (ping.method, ping.path, ping.body)
    assert "s3cr3t" not in ping.target


def test_glob_option_and_exact_precedence_through_a_worker(story: Story) -> None:
    """Globs, per-task options and exact entries each route a run to the right monitor."""
    hb = story.install(
        {
            "proj.reports.*": story.rx.url("reports-glob"),
            "proj.reports.monthly": story.rx.url("monthly-exact"),
            "proj.disabled": "",
        }
    )
    for name in ("daily", "weekly", "monthly"):
        story.run(name)
        story.settle(hb)
    assert ["GET /reports-glob", "GET /weekly-option", "GET /monthly-exact"] == targets(story.rx.pings)


def test_failing_task_sends_one_failure_ping_and_no_success(story: Story) -> None:
    """A task that raises sends one failure ping naming the exception type, and nothing else."""
    hb = story.install({"proj.broken": {"url": story.rx.url("broken"), "provider": "healthchecks"}})
    result = story.tasks["broken"].delay("s3cr3t-argument")
    with pytest.raises(KeyError):
        result.get(timeout=15, interval=0.01)
    story.settle(hb)
    (ping,) = story.rx.pings
    assert ("POST", "/broken/fail", b"KeyError") == (ping.method, ping.path, ping.body)
    assert result.id == ping.query["rid"]
    assert "s3cr3t" not in ping.target + ping.body.decode()


def test_retry_is_not_a_failure(story: Story) -> None:
    """A task that retries twice and then succeeds sends its start once, one success and no failure."""
    hb = story.install({"proj.flaky": {"url": story.rx.url("flaky"), "provider": "healthchecks"}}, send_start=True)
    result = story.tasks["flaky"].delay()
    assert [0, 1, 2] == result.get(timeout=15, interval=0.01)
    story.settle(hb)
    assert ["GET /flaky/start", "GET /flaky"] == targets(story.rx.pings)
    assert [result.id, result.id] == [p.query["rid"] for p in story.rx.pings]


def test_exhausted_retries_send_one_failure(story: Story) -> None:
    """autoretry_for with retries exhausted ends in exactly one start and one failure ping for the run."""
    hb = story.install({"proj.doomed": {"url": story.rx.url("doomed"), "provider": "cronitor"}}, send_start=True)
    result = story.tasks["doomed"].delay()
    with pytest.raises(ValueError):
        result.get(timeout=15, interval=0.01)
    story.settle(hb)
    assert [("run", result.id), ("fail", result.id)] == [(p.query["state"], p.query["series"]) for p in story.rx.pings]
    assert "ValueError" == story.rx.pings[1].query["message"]


def test_failure_pings_can_be_turned_off(story: Story) -> None:
    """heartbeat_send_failure=False silences failures, except for a monitor that sets failure=True."""
    hb = story.install(
        {
            "proj.broken": {"url": story.rx.url("quiet"), "provider": "healthchecks"},
            "proj.sometimes": {"url": story.rx.url("loud"), "provider": "healthchecks", "failure": True},
        },
        send_failure=False,
    )
    with pytest.raises(KeyError):
        story.tasks["broken"].delay("x").get(timeout=15, interval=0.01)
    with pytest.raises(RuntimeError):
        story.run("sometimes", True)
    story.settle(hb)
    assert ["POST /loud/fail"] == targets(story.rx.pings)


def test_generic_monitor_gets_no_failure_ping(story: Story) -> None:
    """A generic URL only knows success: a failure sends nothing rather than a misleading success."""
    hb = story.install({"proj.sometimes": story.rx.url("plain")})
    with pytest.raises(RuntimeError):
        story.run("sometimes", True)
    story.run("sometimes", False)
    story.settle(hb)
    assert ["GET /plain"] == targets(story.rx.pings)


def test_coalescing_sends_one_success_per_window(story: Story) -> None:
    """Five quick successes inside the coalescing window give one success ping; stats count the rest."""
    hb = story.install({"proj.mapped": story.rx.url("f")}, coalesce_seconds=60)
    for _ in range(5):
        story.run("mapped")
    story.settle(hb)
    assert ["GET /f"] == targets(story.rx.pings)
    assert 4 == hb.stats()["coalesced"]


def test_success_after_failure_is_never_coalesced(story: Story) -> None:
    """Inside one window: success, failure, success, success gives three pings; the monitor ends up, not down."""
    hb = story.install({"proj.sometimes": {"url": story.rx.url("s"), "provider": "healthchecks"}}, coalesce_seconds=60)
    story.run("sometimes", False)
    with pytest.raises(RuntimeError):
        story.run("sometimes", True)
    story.run("sometimes", False)
    story.run("sometimes", False)
    story.settle(hb)
    assert ["GET /s", "POST /s/fail", "GET /s"] == targets(story.rx.pings)


def test_start_and_finish_are_never_split_by_coalescing(story: Story) -> None:
    """With start pings on and concurrent runs, every start that was sent is followed by that run's finish."""
    hb = story.install(
        {"proj.double": {"url": story.rx.url("p"), "provider": "healthchecks"}},
        coalesce_seconds=60,
        send_start=True,
    )
    results = [story.tasks["double"].delay(i) for i in range(8)]
    assert [i * 2 for i in range(8)] == [r.get(timeout=15, interval=0.01) for r in results]
    story.settle(hb)
    pings = story.rx.pings
    starts = [p.query["rid"] for p in pings if p.path.endswith("/start")]
    finishes = [p.query["rid"] for p in pings if p.path == "/p"]
    assert 1 == len(starts)
    assert starts == finishes


def test_disabled_sends_nothing(story: Story) -> None:
    """heartbeat_enabled=False wires no hooks: tasks run, no ping is sent."""
    hb = story.install({"proj.mapped": story.rx.url("t")}, enabled=False)
    assert 7 == story.run("mapped")
    story.settle(hb)
    assert [] == story.rx.pings


def test_installing_twice_never_doubles_a_ping(story: Story) -> None:
    """install() is idempotent: a second call (same or changed settings) leaves one set of hooks."""
    urls = {"proj.mapped": story.rx.url("once")}
    first = story.install(urls)
    assert first is story.install(urls)
    third = story.install(urls, timeout=2.0)
    story.run("mapped")
    story.settle(third)
    assert ["GET /once"] == targets(story.rx.pings)


def test_uninstall_stops_pings(story: Story) -> None:
    """After uninstall() the app behaves as if the library had never been installed."""
    story.install({"proj.mapped": story.rx.url("gone")}).uninstall()
    finished = threading.Event()

    def on_postrun(**_: Any) -> None:
        finished.set()

    signals.task_postrun.connect(on_postrun, sender=story.tasks["mapped"], weak=False)
    try:
        story.run("mapped")
        assert finished.wait(10)  # every signal of the run (task_success included) has fired
    finally:
        signals.task_postrun.disconnect(on_postrun, sender=story.tasks["mapped"])
    # Barrier: a sentinel run through the same worker and sender, queued after anything the run could have queued.
    sentinel = story.install({"proj.unmapped": story.rx.url("sentinel")})
    story.run("unmapped")
    story.rx.wait_for(1, name="sentinel")
    story.settle(sentinel)
    assert ["GET /sentinel"] == targets(story.rx.pings)


def test_a_hanging_endpoint_never_fails_or_slows_the_task(story: Story) -> None:
    """With the monitor hanging past the timeout, every task returns its result at its normal pace."""
    story.install({"proj.double": story.rx.url("busy")}, timeout=0.5, max_attempts=1)
    story.rx.respond(200, delay=5.0)
    started = time.monotonic()
    assert [2, 4, 6, 8, 10] == [story.run("double", i) for i in (1, 2, 3, 4, 5)]
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed  # five pings at 0.5 s each, were they inline, would take 2.5 s
