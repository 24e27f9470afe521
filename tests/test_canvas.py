"""Canvas completion pings: one success ping when the whole canvas finished, one failure ping otherwise.

One in-process threads worker on Redis (broker and result backend: chords need
one) serves the module; every test pings its own monitor names.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery, chain, chord, group
from celery.contrib.testing.worker import start_worker
from celery.exceptions import TimeoutError as CeleryTimeoutError
from conftest import REDIS_HOST, REDIS_PORT, require_broker

import celery_heartbeat
from celery_heartbeat import ConfigurationError, heartbeat_signature, with_heartbeat
from celery_heartbeat._tasks import PING_TASK
from celery_heartbeat.testing import Ping, PingReceiver

SETTLE = 0.7  # after the expected ping: long enough for a wrong extra ping to show up


@dataclass
class Rig:
    app: Celery
    rx: PingReceiver
    tasks: dict[str, Any]

    def monitor(self, name: str) -> dict[str, str]:
        """A Healthchecks-style monitor on the receiver, so failure pings are told apart (`/fail`)."""
        return {"url": self.rx.url(name), "provider": "healthchecks"}

    def get(self, result: Any, timeout: float = 15) -> Any:
        """`result.get()`; on a timeout, fail with what the broker and the result store hold for it.

        Why: a wait that timed out (seen twice in CI under load) says nothing by itself; this says
        whether the tasks ran, their results were stored, or their messages still wait.
        """
        try:
            return result.get(timeout=timeout)
        except CeleryTimeoutError:
            pytest.fail(_stalled(self.app, result), pytrace=False)

    def pings(self, name: str) -> tuple[list[Ping], list[Ping]]:
        """(success pings, failure pings) for one monitor name."""
        pings = self.rx.pings_for(name)
        return [p for p in pings if p.is_success], [p for p in pings if p.path.endswith("/fail")]


def _stalled(app: Celery, result: Any) -> str:
    """What the result store, the queue and this process's threads say about a result that never came."""
    client = app.backend.client
    lines = [f"result {result.id} did not arrive; stored states, last link first:"]
    node = result
    while node is not None:
        raw = client.get(app.backend.get_key_for_task(node.id))
        lines.append(f"  {node.id}: {json.loads(raw)['status'] if raw else 'nothing stored'}")
        node = node.parent
    queue = app.conf.task_default_queue
    lines.append(f"messages waiting in {queue!r}: {client.llen(queue)}")
    channels = sorted(app.backend.result_consumer.subscribed_to)
    lines.append(f"pubsub channels the test's result consumer holds: {channels}")
    for thread_id, frame in sys._current_frames().items():
        lines.append(f"thread {thread_id}:\n" + "".join(traceback.format_stack(frame, limit=6)))
    return "\n".join(lines)


def _define(app: Celery) -> dict[str, Any]:
    @app.task(name="canvas.stamp")
    def stamp(delay: float) -> float:
        time.sleep(delay)
        return time.time()

    @app.task(name="canvas.latest")
    def latest(stamps: list[float]) -> float:
        return max(stamps)

    @app.task(name="canvas.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="canvas.boom")
    def boom(*_: Any) -> None:
        raise ValueError("boom")

    return {"stamp": stamp, "latest": latest, "add": add, "boom": boom}


def _urls(rx: PingReceiver) -> dict[str, dict[str, str]]:
    """The rig's `heartbeat_urls`: names the canvas helpers can use."""
    return {name: {"url": rx.url(name), "provider": "healthchecks"} for name in ("nightly", "etl")}


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    require_broker("Redis", REDIS_HOST, REDIS_PORT)
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{os.environ.get('PYTEST_REDIS_DB', '1')}"
    name = f"t{uuid.uuid4().hex[:10]}"
    with PingReceiver() as rx:
        app = Celery(name, broker=url, backend=url, set_as_current=False)
        app.conf.task_default_queue = name
        app.conf.control_exchange = name
        app.conf.result_expires = 300
        tasks = _define(app)
        celery_heartbeat.install(app, urls=_urls(rx))
        with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=15):
            yield Rig(app, rx, tasks)


def test_a_wait_outlives_a_collected_copy_of_its_result(rig: Rig) -> None:
    """Harness: a garbage copy of a result, collected while the test waits on the original, ends no wait.

    Canvases make such copies; before Celery 5.7 collecting one unsubscribed the original's wait.
    """
    result = rig.tasks["stamp"].delay(1.0)
    copy = rig.app.AsyncResult(result.id)
    copy.cycle = copy  # only the cycle collector frees it
    del copy
    collector = threading.Timer(0.3, gc.collect)
    collector.start()
    try:
        assert rig.get(result, 6) > 0
    finally:
        collector.join()


def test_chord_of_six_pings_success_once_after_its_last_header_task(rig: Rig) -> None:
    """A chord of 6 sends exactly one success ping, after its last header task finished."""
    stamp, latest = rig.tasks["stamp"], rig.tasks["latest"]
    canvas = chord([stamp.si(0.05 * i) for i in range(6)], latest.s())
    result = with_heartbeat(canvas, rig.monitor("chord6"), app=rig.app).apply_async()
    last_header_finished = rig.get(result, 20)
    (ping,) = rig.rx.wait_for(1, name="chord6")
    time.sleep(SETTLE)
    successes, failures = rig.pings("chord6")
    assert (1, 0) == (len(successes), len(failures))
    assert ping.time >= last_header_finished
    assert 6 == len(rig.get(result.parent, 5))


def test_chord_whose_header_task_fails_pings_failure_once_and_no_success(rig: Rig) -> None:
    """A chord whose header task fails sends one failure ping and no success ping."""
    stamp, boom, latest = rig.tasks["stamp"], rig.tasks["boom"], rig.tasks["latest"]
    canvas = chord([stamp.si(0.01), boom.si(), stamp.si(0.02), boom.si()], latest.s())
    result = with_heartbeat(canvas, rig.monitor("chordfail"), app=rig.app).apply_async()
    rig.rx.wait_for(1, name="chordfail", timeout=15)
    time.sleep(SETTLE)
    successes, failures = rig.pings("chordfail")
    assert (0, 1) == (len(successes), len(failures))
    assert "FAILURE" == result.state


def test_chain_pings_once_after_its_last_link_and_keeps_its_result(rig: Rig) -> None:
    """A chain pings success once after its last link, and its result is still the last link's."""
    add = rig.tasks["add"]
    result = with_heartbeat(chain(add.s(1, 2), add.s(3), add.s(4)), rig.monitor("chain"), app=rig.app).delay()
    assert 10 == rig.get(result, 15)
    (ping,) = rig.rx.wait_for(1, name="chain")
    time.sleep(SETTLE)
    successes, failures = rig.pings("chain")
    assert (1, 0) == (len(successes), len(failures))
    assert result.date_done is not None
    assert ping.time >= result.date_done.timestamp() - 0.01


def test_chain_failing_in_the_middle_pings_failure_once(rig: Rig) -> None:
    """A chain whose middle link fails sends one failure ping and no success ping."""
    add, boom = rig.tasks["add"], rig.tasks["boom"]
    canvas = chain(add.s(1, 2), boom.s(), add.s(4))
    with_heartbeat(canvas, rig.monitor("chainfail"), app=rig.app).delay()
    rig.rx.wait_for(1, name="chainfail", timeout=15)
    time.sleep(SETTLE)
    successes, failures = rig.pings("chainfail")
    assert (0, 1) == (len(successes), len(failures))


def test_nested_canvas_pings_success_once_at_its_very_end(rig: Rig) -> None:
    """A chain holding a chord, a chain and a trailing group pings once, after everything."""
    add, stamp, latest = rig.tasks["add"], rig.tasks["stamp"], rig.tasks["latest"]
    canvas = chain(
        add.si(1, 1),
        chord([stamp.si(0.01), stamp.si(0.05)], latest.s()),
        chain(add.si(2, 2), group(add.si(3, 3), add.si(4, 4))),
    )
    result = with_heartbeat(canvas, rig.monitor("nested"), app=rig.app).apply_async()
    assert [6, 8] == rig.get(result, 20)
    rig.rx.wait_for(1, name="nested")
    time.sleep(SETTLE)
    assert (1, 0) == tuple(map(len, rig.pings("nested")))


def test_nested_canvas_failure_deep_in_a_chord_header_pings_failure_once(rig: Rig) -> None:
    """A failure inside a chain inside a chord header inside a chain sends one failure ping."""
    add, boom, latest = rig.tasks["add"], rig.tasks["boom"], rig.tasks["latest"]
    canvas = chain(add.si(1, 1), chord([chain(add.si(1, 2), boom.s()), add.si(3, 4)], latest.s()), add.si(5, 5))
    with_heartbeat(canvas, rig.monitor("nestedfail"), app=rig.app).apply_async()
    rig.rx.wait_for(1, name="nestedfail", timeout=15)
    time.sleep(SETTLE)
    assert (0, 1) == tuple(map(len, rig.pings("nestedfail")))


def test_group_becomes_a_chord_onto_the_ping_and_still_returns_the_group_results(rig: Rig) -> None:
    """A group pings once after all its members, and `.get()` still returns their results in order."""
    add, boom = rig.tasks["add"], rig.tasks["boom"]
    result = with_heartbeat(group(add.si(i, i) for i in range(5)), rig.monitor("group"), app=rig.app).delay()
    assert [0, 2, 4, 6, 8] == rig.get(result, 15)
    rig.rx.wait_for(1, name="group")
    with_heartbeat(group(boom.si(), add.si(1, 1), boom.si()), rig.monitor("groupfail"), app=rig.app).delay()
    rig.rx.wait_for(1, name="groupfail", timeout=15)
    time.sleep(SETTLE)
    assert (1, 0) == tuple(map(len, rig.pings("group")))
    assert (0, 1) == tuple(map(len, rig.pings("groupfail")))


def test_success_and_failure_pings_carry_the_canvas_root_id(rig: Rig) -> None:
    """A start link and the final ping of one chain share the run id: the chain's root task id."""
    add = rig.tasks["add"]
    monitor = rig.monitor("runid")
    canvas = chain(heartbeat_signature(monitor, "start", app=rig.app), add.si(1, 2), add.s(3))
    result = with_heartbeat(canvas, monitor, app=rig.app).apply_async()
    assert 6 == rig.get(result, 15)
    start, success = rig.rx.wait_for(2, name="runid")
    root_id = result.parent.parent.id  # the chain's first task: the start ping
    assert ("/runid/start", "/runid") == (start.path, success.path)
    assert root_id == start.query["rid"] == success.query["rid"]


def test_ping_links_pass_their_parents_result_on_unchanged(rig: Rig) -> None:
    """A ping link in the middle of a chain, or as a chord body, hands on what it received."""
    add = rig.tasks["add"]
    monitor = rig.monitor("passon")
    middle = chain(add.s(1, 2), heartbeat_signature(monitor, "start", app=rig.app), add.s(4))
    end = chain(add.s(2, 2), heartbeat_signature(monitor, app=rig.app))
    body = chord([add.si(1, 1), add.si(2, 2)], heartbeat_signature(monitor, app=rig.app))
    results = [sig.apply_async() for sig in (middle, end, body)]
    assert [7, 4, [2, 4]] == [rig.get(result, 15) for result in results]
    rig.rx.wait_for(3, name="passon")


def test_with_heartbeat_start_pings_when_the_first_task_starts_with_the_finish_run_id(rig: Rig) -> None:
    """start=True: one start ping (from the first task's worker), then one success ping with the same run id."""
    add, stamp, latest = rig.tasks["add"], rig.tasks["stamp"], rig.tasks["latest"]
    canvases = {
        "startchain": (chain(add.s(1, 2), add.s(3)), 6),
        "startchord": (chord([stamp.si(0.01), stamp.si(0.02)], latest.s()), None),
        "startgroup": (group(add.si(1, 1), add.si(2, 2)), [2, 4]),
        "starttask": (add.s(2, 3), 5),
        "startnested": (chain(group(add.si(1, 1), add.si(2, 2)), latest.s(), add.s(1)), 5),
    }
    results = {
        name: with_heartbeat(canvas, rig.monitor(name), start=True, app=rig.app).apply_async()
        for name, (canvas, _) in canvases.items()
    }
    for name, (_, expected) in canvases.items():
        value = rig.get(results[name], 20)
        if expected is not None:
            assert expected == value, name
        start, success = rig.rx.wait_for(2, name=name)
        assert (f"/{name}/start", f"/{name}") == (start.path, success.path)
        assert start.query["rid"] == success.query["rid"], name
    time.sleep(SETTLE)
    assert {name: 2 for name in canvases} == {name: len(rig.rx.pings_for(name)) for name in canvases}


def test_with_heartbeat_start_keeps_the_canvas_data_flow(rig: Rig) -> None:
    """start=True: arguments given at apply time, or a parent's result in an outer chain, still reach the canvas."""
    add = rig.tasks["add"]
    applied = with_heartbeat(chain(add.s(3), add.s(4)), rig.monitor("startargs"), start=True, app=rig.app).delay(1)
    inner = with_heartbeat(chain(add.s(3), add.s(4)), rig.monitor("startouter"), start=True, app=rig.app)
    outer = chain(add.s(1, 1), inner).apply_async()
    assert (8, 9) == (rig.get(applied, 15), rig.get(outer, 15))
    for name in ("startargs", "startouter"):
        start, success = rig.rx.wait_for(2, name=name)
        assert (f"/{name}/start", f"/{name}", start.query["rid"]) == (start.path, success.path, success.query["rid"])


def test_with_heartbeat_start_by_name_and_failure(rig: Rig) -> None:
    """start=True with a heartbeat_urls name resolves on the worker; a failing canvas gets start then failure."""
    add, boom = rig.tasks["add"], rig.tasks["boom"]
    with_heartbeat(chain(add.s(1, 2), boom.s()), "etl", start=True, app=rig.app).apply_async()
    start, failure = rig.rx.wait_for(2, name="etl", timeout=15)
    assert ("/etl/start", "/etl/fail") == (start.path, failure.path)
    assert start.query["rid"] == failure.query["rid"]


def test_with_heartbeat_start_needs_a_provider_with_a_start_signal(rig: Rig) -> None:
    """start=True on a generic URL (no start signal) is a ConfigurationError, not a silent no-op."""
    add = rig.tasks["add"]
    with pytest.raises(ConfigurationError) as info:
        with_heartbeat(add.s(1, 1), "https://vigilmon.example/p/abc", start=True, app=rig.app)
    assert "start" == info.value.key
    with pytest.raises(ConfigurationError):
        with_heartbeat(add.s(1, 1), rig.monitor("x"), start="yes", app=rig.app)  # type: ignore[arg-type]


def test_signature_by_name_keeps_the_url_out_of_the_message_and_resolves_on_the_worker(rig: Rig) -> None:
    """A `heartbeat_urls` name travels instead of the URL, and the worker pings the URL it maps to."""
    sig = heartbeat_signature("nightly", app=rig.app)
    assert PING_TASK == sig.task
    assert rig.rx.base_url not in json.dumps(dict(sig))
    assert 2 == rig.get(chain(rig.tasks["add"].si(1, 1), sig).delay(), 15)
    (ping,) = rig.rx.wait_for(1, name="nightly")
    assert "/nightly" == ping.path


def test_ping_task_holds_a_worker_slot_at_most_timeout_times_attempts(rig: Rig) -> None:
    """Against a hanging monitor the ping task gives up after timeout x attempts and still succeeds."""
    rig.rx.respond(200, delay=5.0, name="hang")
    celery_heartbeat.install(rig.app, urls=_urls(rig.rx), timeout=0.3, max_attempts=2)
    try:
        started = time.monotonic()
        result = heartbeat_signature(rig.rx.url("hang"), app=rig.app).delay()
        rig.get(result, 10)
        elapsed = time.monotonic() - started
    finally:
        celery_heartbeat.install(rig.app, urls=_urls(rig.rx))
        rig.rx.healthy()
    assert "SUCCESS" == result.state
    assert 2 == len(rig.rx.pings_for("hang"))
    assert elapsed < 0.3 * 2 + 0.6


def test_heartbeat_signature_validates_urls_and_kind_when_built(rig: Rig) -> None:
    """A bad URL, a glob, a non-string or an unknown kind raise ConfigurationError before anything is sent."""
    for bad in ("ftp://example.com/x", "https://", "reports.*", 42):
        with pytest.raises(ConfigurationError) as info:
            heartbeat_signature(bad, app=rig.app)
        assert "url_or_monitor" == info.value.key
    with pytest.raises(ConfigurationError) as info:
        heartbeat_signature("nightly", "done", app=rig.app)
    assert "kind" == info.value.key
    with pytest.raises(ConfigurationError):
        with_heartbeat(rig.tasks["add"].si(1, 1), {"url": "https://x.example/p", "provider": "nope"}, app=rig.app)


def test_with_heartbeat_never_mutates_its_input(rig: Rig) -> None:
    """The canvas passed in is unchanged after wrapping (links land on a copy only)."""
    add, stamp, latest = rig.tasks["add"], rig.tasks["stamp"], rig.tasks["latest"]
    inner = chord([stamp.si(0), group(add.si(1, 1), add.si(2, 2))], latest.s())
    canvas = chain(add.si(1, 1), inner, group(add.si(3, 3), add.si(4, 4)))
    before = json.dumps(canvas, sort_keys=True, default=repr)
    wrapped = with_heartbeat(canvas, rig.monitor("immutable"), app=rig.app)
    assert before == json.dumps(canvas, sort_keys=True, default=repr)
    assert before != json.dumps(wrapped, sort_keys=True, default=repr)


def test_group_without_a_result_backend_is_a_configuration_error() -> None:
    """Wrapping a group on an app without a result backend raises ConfigurationError that says so."""
    app = Celery("nobackend", broker="memory://", set_as_current=False)

    @app.task(name="nobackend.add")
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(ConfigurationError) as info:
        with_heartbeat(group(add.si(1, 1), add.si(2, 2)), "https://hc-ping.com/abc", app=app)
    assert "result_backend" == info.value.key
    assert "needs a result backend" in str(info.value)
    wrapped = with_heartbeat(chain(add.si(1, 1), add.s(2)), "https://hc-ping.com/abc", app=app)
    assert PING_TASK == wrapped.tasks[-1].options["link"][0]["task"]  # a chain needs no backend


def test_disabled_still_registers_the_ping_task_and_sends_nothing() -> None:
    """With heartbeat_enabled=False a canvas using the ping task runs (no NotRegistered) and nothing is sent."""
    app = Celery("disabled", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.broker_transport_options = {"polling_interval": 0.01}

    @app.task(name="disabled.add")
    def add(x: int, y: int) -> int:
        return x + y

    with PingReceiver() as rx:
        celery_heartbeat.install(app, enabled=False)
        assert PING_TASK in app.tasks
        with start_worker(app, pool="solo", perform_ping_check=False):
            linked = chain(add.si(1, 2), heartbeat_signature(rx.url("off"), app=app)).delay()
            wrapped = with_heartbeat(chain(add.si(2, 2), add.s(1)), rx.url("off"), app=app).delay()
            monitor = {"url": rx.url("off"), "provider": "healthchecks"}
            started = with_heartbeat(chain(add.si(3, 3), add.s(1)), monitor, start=True, app=app).delay()
            assert (3, 5, 7) == (linked.get(timeout=10), wrapped.get(timeout=10), started.get(timeout=10))
            time.sleep(SETTLE)
        assert [] == rx.pings
