"""Specifications of the public test helpers: PingReceiver and the heartbeat_receiver fixture."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from celery import Celery
from celery.contrib.testing.worker import start_worker

import celery_heartbeat
from celery_heartbeat import testing
from celery_heartbeat.config.providers import build_request
from celery_heartbeat.testing import Ping, PingReceiver


@pytest.fixture
def receiver() -> Iterator[PingReceiver]:
    with PingReceiver() as started:
        yield started


def _ping(path: str, *, time: float, status: int = 200, query: dict[str, str] | None = None) -> Ping:
    return Ping("GET", path, query or {}, b"", {}, time, status=status)


class TestRecording:
    def test_records_method_path_query_and_body(self, receiver: PingReceiver) -> None:
        """A POST is recorded with its method, path, parsed query, raw target and body."""
        requests.post(receiver.url("abc/start") + "?rid=1&rid=2&x=", data=b"log line", timeout=5)

        (ping,) = receiver.pings
        assert "POST" == ping.method
        assert "/abc/start" == ping.path
        assert {"rid": "2", "x": ""} == ping.query
        assert "/abc/start?rid=1&rid=2&x=" == ping.target
        assert b"log line" == ping.body
        assert "8" == ping.header("content-length")
        assert 200 == ping.status
        assert "abc" == ping.name

    def test_records_get_head_and_put(self, receiver: PingReceiver) -> None:
        """GET, HEAD and PUT are all answered and recorded in arrival order."""
        assert 200 == requests.get(receiver.url("a"), timeout=5).status_code
        assert 200 == requests.head(receiver.url("a"), timeout=5).status_code
        assert 200 == requests.put(receiver.url("a"), data=b"x", timeout=5).status_code

        assert ["GET", "HEAD", "PUT"] == [p.method for p in receiver.pings]

    def test_answers_ok_by_default(self, receiver: PingReceiver) -> None:
        """The default answer is 200 with body OK."""
        response = requests.get(receiver.url("a"), timeout=5)

        assert (200, "OK") == (response.status_code, response.text)

    def test_url_and_base_url(self, receiver: PingReceiver) -> None:
        """url(name) is base_url plus the name, on the bound port."""
        assert f"http://127.0.0.1:{receiver.port}" == receiver.base_url
        assert f"{receiver.base_url}/x" == receiver.url("x")
        assert 0 != receiver.port

    def test_pings_for_filters_by_name(self, receiver: PingReceiver) -> None:
        """pings_for(name) keeps only pings whose first path segment is name."""
        for path in ("a", "b/start", "a/fail", "ab"):
            requests.get(f"{receiver.base_url}/{path}", timeout=5)

        assert ["/a", "/a/fail"] == [p.path for p in receiver.pings_for("a")]

    def test_pings_is_a_snapshot(self, receiver: PingReceiver) -> None:
        """Mutating the returned list does not affect the receiver."""
        requests.get(receiver.url("a"), timeout=5)

        receiver.pings.clear()

        assert 1 == len(receiver.pings)

    def test_clear_forgets_pings(self, receiver: PingReceiver) -> None:
        """clear() empties the record."""
        requests.get(receiver.url("a"), timeout=5)

        receiver.clear()

        assert [] == receiver.pings


class TestWaitFor:
    def test_returns_matching_pings_once_they_arrive(self, receiver: PingReceiver) -> None:
        """wait_for blocks until pings sent from another thread arrive, then returns them all."""

        def send() -> None:
            time.sleep(0.1)
            for path in ("a", "b", "a"):
                requests.get(f"{receiver.base_url}/{path}", timeout=5)

        threading.Thread(target=send).start()

        found = receiver.wait_for(2, name="a", timeout=5)

        assert ["a", "a"] == [p.name for p in found]

    def test_predicate_filters(self, receiver: PingReceiver) -> None:
        """A predicate narrows what counts."""
        requests.get(receiver.url("a/start"), timeout=5)
        requests.get(receiver.url("a"), timeout=5)

        found = receiver.wait_for(predicate=lambda p: p.path.endswith("/start"), timeout=1)

        assert ["/a/start"] == [p.path for p in found]

    def test_times_out_with_assertion_error_listing_arrivals(self, receiver: PingReceiver) -> None:
        """On timeout wait_for raises AssertionError naming what did arrive."""
        requests.get(receiver.url("other"), timeout=5)

        with pytest.raises(AssertionError) as excinfo:
            receiver.wait_for(1, name="missing", timeout=0.2)

        assert "GET /other -> 200" in str(excinfo.value)
        assert "'missing'" in str(excinfo.value)


class TestFaultInjection:
    def test_respond_500_is_seen_by_client_and_recorded(self, receiver: PingReceiver) -> None:
        """respond(500) makes every ping fail, and the failing ping is still recorded."""
        receiver.respond(500)

        response = requests.get(receiver.url("a"), timeout=5)

        assert 500 == response.status_code
        assert [500] == [p.status for p in receiver.pings]

    def test_respond_429_with_retry_after(self, receiver: PingReceiver) -> None:
        """respond(429, headers=...) sends the headers, e.g. Retry-After."""
        receiver.respond(429, headers={"Retry-After": "1"}, body=b"slow down")

        response = requests.post(receiver.url("a"), timeout=5)

        assert (429, "1", "slow down") == (
            response.status_code,
            response.headers["Retry-After"],
            response.text,
        )

    def test_respond_per_name_overrides_default(self, receiver: PingReceiver) -> None:
        """respond(name=...) changes only that monitor's answer."""
        receiver.respond(503, name="bad")

        bad = requests.get(receiver.url("bad/start"), timeout=5).status_code
        good = requests.get(receiver.url("good"), timeout=5).status_code

        assert (503, 200) == (bad, good)

    def test_delay_past_client_timeout_times_out(self, receiver: PingReceiver) -> None:
        """A delay past the client's timeout makes the client time out; the ping is recorded."""
        receiver.respond(200, delay=2.0)

        with pytest.raises(requests.Timeout):
            requests.get(receiver.url("a"), timeout=0.2)

        assert ["a"] == [p.name for p in receiver.pings]

    def test_delay_is_observed(self, receiver: PingReceiver) -> None:
        """A short delay is felt as latency, then the answer comes."""
        receiver.respond(200, delay=0.3)

        started = time.monotonic()
        response = requests.get(receiver.url("a"), timeout=5)

        assert 200 == response.status_code
        assert time.monotonic() - started >= 0.3

    def test_reset_connections_raises_connection_error(self, receiver: PingReceiver) -> None:
        """reset_connections() makes the client see a ConnectionError; the ping has status 0."""
        receiver.reset_connections()

        with pytest.raises(requests.ConnectionError):
            requests.post(receiver.url("a"), data=b"x", timeout=5)

        assert [0] == [p.status for p in receiver.pings]

    def test_reset_connections_per_name(self, receiver: PingReceiver) -> None:
        """reset_connections(name=...) resets only that monitor's pings."""
        receiver.reset_connections(name="flaky")

        with pytest.raises(requests.ConnectionError):
            requests.get(receiver.url("flaky"), timeout=5)
        assert 200 == requests.get(receiver.url("fine"), timeout=5).status_code

    def test_healthy_restores_everything(self, receiver: PingReceiver) -> None:
        """healthy() undoes statuses, delays and resets, default and per name."""
        receiver.respond(500, delay=5.0)
        receiver.respond(404, name="x")
        receiver.reset_connections(name="y")

        receiver.healthy()

        statuses = [requests.get(receiver.url(n), timeout=1).status_code for n in ("a", "x", "y")]
        assert [200, 200, 200] == statuses

    def test_session_survives_faults_and_reuses_connection(self, receiver: PingReceiver) -> None:
        """A keep-alive Session keeps one connection across pings, and reconnects after a reset."""
        with requests.Session() as session:
            for _ in range(5):
                assert 200 == session.get(receiver.url("a"), timeout=5).status_code
            assert 1 == receiver.connections_accepted

            receiver.reset_connections()
            with pytest.raises(requests.ConnectionError):
                session.get(receiver.url("a"), timeout=5)
            receiver.healthy()

            assert 200 == session.post(receiver.url("a"), data=b"after", timeout=5).status_code
            assert 2 == receiver.connections_accepted
        assert 7 == len(receiver.pings)


class TestLifecycle:
    def test_stop_does_not_wait_for_delayed_handlers(self) -> None:
        """stop() returns promptly even while a handler sleeps in a long delay."""
        receiver = PingReceiver().start()
        receiver.respond(200, delay=30.0)
        errors: list[BaseException] = []

        def send() -> None:
            try:
                requests.get(receiver.url("a"), timeout=30)
            except requests.RequestException as exc:
                errors.append(exc)

        client = threading.Thread(target=send)
        client.start()
        receiver.wait_for(1, timeout=5)

        started = time.monotonic()
        receiver.stop()
        client.join(timeout=5)

        assert time.monotonic() - started < 5
        assert not client.is_alive()
        assert 1 == len(errors)

    def test_start_and_stop_are_idempotent(self) -> None:
        """start() twice keeps one server; stop() twice is harmless."""
        receiver = PingReceiver()
        assert receiver is receiver.start()
        port = receiver.port
        receiver.start()
        assert port == receiver.port

        receiver.stop()
        receiver.stop()

        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/a", timeout=1)

    def test_stop_closes_kept_alive_connections(self) -> None:
        """After stop(), idle keep-alive connections are closed, not served by a leftover thread."""
        with requests.Session() as session:
            with PingReceiver() as receiver:
                url = receiver.url("a")
                session.get(url, timeout=5)
            with pytest.raises(requests.ConnectionError):
                session.get(url, timeout=5)

    def test_port_before_start_raises(self) -> None:
        """An unstarted receiver has no port."""
        with pytest.raises(RuntimeError):
            _ = PingReceiver().port


class TestPing:
    def test_name_and_target(self) -> None:
        """name is the first path segment; target adds the raw query back."""
        ping = Ping("GET", "/abc/start", {"a": "1"}, b"", {}, 0.0, raw_query="a=1")

        assert ("abc", "/abc/start?a=1") == (ping.name, ping.target)

    @pytest.mark.parametrize(
        ("path", "query", "status", "expected"),
        [
            ("/a", {}, 200, True),
            ("/a/start", {}, 200, False),
            ("/a/fail", {}, 200, False),
            ("/a", {"state": "run"}, 200, False),
            ("/a", {"state": "fail"}, 200, False),
            ("/a", {"state": "complete"}, 200, True),
            ("/a", {"status": "down"}, 200, False),
            ("/a", {"status": "up"}, 200, True),
            ("/a", {"s": "1", "m": "ValueError"}, 200, False),
            ("/a", {"s": "0"}, 200, True),
            ("/a", {}, 500, False),
            ("/a", {}, 0, False),
        ],
    )
    def test_is_success(self, path: str, query: dict[str, str], status: int, expected: bool) -> None:
        """Only a 2xx ping that is not a start/fail/run/down signal counts as success."""
        ping = _ping(path, time=0.0, query=query, status=status)

        assert expected == ping.is_success

    @pytest.mark.parametrize("provider", ["healthchecks", "cronitor", "betterstack", "uptime_kuma", "deadmanssnitch"])
    def test_is_success_agrees_with_every_providers_wire_format(self, receiver: PingReceiver, provider: str) -> None:
        """What the library sends as success counts as success; its start and failure signals never do."""
        sent = {}
        for kind in ("start", "success", "failure"):
            wire = build_request(provider, receiver.url(kind), kind, run_id="r1", detail="ValueError")  # type: ignore[arg-type]
            if wire is not None:
                requests.request(wire.method, wire.url, data=wire.body, timeout=5)
                sent[kind] = wire.method
        receiver.wait_for(len(sent))
        judged = {kind: [p.is_success for p in receiver.pings_for(kind)] for kind in sent}
        assert {kind: [kind == "success"] for kind in sent} == judged


class TestDocstring:
    def test_module_docstring_shows_the_method_a_success_ping_really_uses(self) -> None:
        """The module docstring's example asserts the HTTP method that install()'s success ping really has."""
        shown = re.search(r'assert "(\w+)" == ping.method', testing.__doc__ or "")
        assert shown is not None
        app = Celery("docstring", broker="memory://", set_as_current=False)
        app.conf.broker_transport_options = {"polling_interval": 0.01}

        @app.task(name="proj.nightly_report")
        def nightly_report() -> None:
            return None

        with PingReceiver() as receiver:
            handle = celery_heartbeat.install(app, urls={"proj.nightly_report": receiver.url("nightly-report")})
            try:
                with start_worker(app, pool="solo", perform_ping_check=False):
                    nightly_report.delay()
                    (ping,) = receiver.wait_for(1, name="nightly-report")
            finally:
                handle.uninstall()
        assert shown.group(1) == ping.method


class TestIsLate:
    def test_boundary_is_on_time_and_just_past_is_late(self, receiver: PingReceiver) -> None:
        """Exactly period+grace after the last success ping is on time; a moment later is late."""
        requests.get(receiver.url("job"), timeout=5)
        last = receiver.last_ping_time("job")
        assert last is not None

        assert False is receiver.is_late("job", period=60, grace=5, now=last + 65)
        assert True is receiver.is_late("job", period=60, grace=5, now=last + 65.001)

    def test_pings_after_now_are_ignored(self, receiver: PingReceiver) -> None:
        """Judging a past moment ignores the pings that arrived after it."""
        requests.get(receiver.url("job"), timeout=5)
        time.sleep(0.01)
        requests.get(receiver.url("job"), timeout=5)
        first, second = (p.time for p in receiver.pings_for("job"))
        between = (first + second) / 2

        assert True is receiver.is_late("job", period=0, grace=0, now=between)
        assert False is receiver.is_late("job", period=0, grace=0, now=second)

    def test_no_pings_counts_from_since(self, receiver: PingReceiver) -> None:
        """With no ping at all, lateness is measured from since."""
        assert False is receiver.is_late("job", period=10, grace=0, since=100.0, now=110.0)
        assert True is receiver.is_late("job", period=10, grace=0, since=100.0, now=110.5)

    def test_no_pings_counts_from_start_by_default(self, receiver: PingReceiver) -> None:
        """since defaults to the receiver's start time."""
        started = receiver.started_at
        assert started is not None

        assert False is receiver.is_late("job", period=1, grace=1, now=started + 2)
        assert True is receiver.is_late("job", period=1, grace=1, now=started + 2.5)

    def test_start_and_fail_pings_are_not_success(self, receiver: PingReceiver) -> None:
        """Start, fail and failing pings do not keep a monitor on time."""
        receiver.respond(500, name="broken")
        for path in ("job/start", "job/fail", "job?state=run", "job?state=fail", "job?status=down"):
            requests.get(f"{receiver.base_url}/{path}", timeout=5)
        requests.get(receiver.url("broken"), timeout=5)
        now = time.time() + 0.5

        assert True is receiver.is_late("job", period=0.1, grace=0.1, now=now, since=now - 1)
        assert True is receiver.is_late("broken", period=0.1, grace=0.1, now=now, since=now - 1)
        assert receiver.last_success_time("job") is None
        assert receiver.last_ping_time("job") is not None

    def test_success_ping_keeps_monitor_on_time(self, receiver: PingReceiver) -> None:
        """A success ping after a start ping makes the monitor on time."""
        requests.get(receiver.url("job/start"), timeout=5)
        requests.get(receiver.url("job"), timeout=5)

        assert False is receiver.is_late("job", period=60, grace=0)


class TestFixture:
    def test_heartbeat_receiver_fixture_is_started(self, heartbeat_receiver: PingReceiver) -> None:
        """The plugin's heartbeat_receiver fixture yields a started receiver."""
        requests.get(heartbeat_receiver.url("fixture"), timeout=5)

        assert ["fixture"] == [p.name for p in heartbeat_receiver.wait_for(1, timeout=5)]
