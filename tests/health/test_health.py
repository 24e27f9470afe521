"""Health checks against real workers on Redis and RabbitMQ: liveness, queue depth, a down broker."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from conftest import RABBITMQ_HOST, RABBITMQ_PORT, REDIS_HOST, REDIS_PORT, require_broker
from kombu import Queue
from support import free_port
from worker_process import WorkerProcess, spawn_worker

from celery_heartbeat.health import HealthReport, check_queue, check_workers
from celery_heartbeat.health.broker import load_transport

WORKER_MODULE = """
import os
from celery import Celery

app = Celery(os.environ["HB_APP_NAME"], broker=os.environ["HB_BROKER_URL"])
app.conf.control_exchange = os.environ["HB_CONTROL_EXCHANGE"]
app.conf.broker_connection_retry_on_startup = True
"""


def broker_url(kind: str) -> str:
    """The URL of a real broker of this kind, skipping (or failing under CI) when it is down."""
    if kind == "redis":
        require_broker("Redis", REDIS_HOST, REDIS_PORT)
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{os.environ.get('PYTEST_REDIS_DB', '1')}"
    require_broker("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT)
    return f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}//"


def make_app(url: str, control_exchange: str, **conf: Any) -> Celery:
    """An isolated Celery app whose broadcasts reach only workers on ``control_exchange``."""
    app = Celery(control_exchange, broker=url, set_as_current=False)
    app.conf.control_exchange = control_exchange
    app.conf.update(conf)
    return app


def delete_broker_entities(url: str, name: str, queues: list[str]) -> None:
    """Remove what a test left on a shared broker: queues and their exchanges (RabbitMQ) or keys (Redis)."""
    if url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"*{name}*"))
        if keys:
            client.delete(*keys)
        client.close()
        return
    app = Celery(name, broker=url, set_as_current=False)
    with app.connection_for_write() as conn:
        for queue in queues:
            for delete in (conn.default_channel.queue_delete, conn.default_channel.exchange_delete):
                with contextlib.suppress(Exception):
                    delete(queue)


@dataclass
class Fleet:
    """Real `celery worker` processes: one alone on its exchange, and a pair on another.

    ``p1`` consumes queues ``qa`` and ``qb``; ``p2`` consumes only ``qa``.
    """

    url: str
    name: str
    procs: list[WorkerProcess] = field(default_factory=list)

    @property
    def solo_exchange(self) -> str:
        return f"{self.name}s"

    @property
    def pair_exchange(self) -> str:
        return f"{self.name}p"

    @property
    def qa(self) -> str:
        return f"{self.name}.a"

    @property
    def qb(self) -> str:
        return f"{self.name}.b"

    @property
    def qs(self) -> str:
        return f"{self.name}.s"

    def solo_app(self) -> Celery:
        return make_app(self.url, self.solo_exchange, task_default_queue=self.qs)

    def pair_app(self) -> Celery:
        return make_app(self.url, self.pair_exchange, task_default_queue=self.qa)


def start_fleet(url: str, workdir: Path) -> Fleet:
    """Start three worker processes at once and wait until Celery's own ping sees them all."""
    fleet = Fleet(url=url, name=f"t{uuid.uuid4().hex[:10]}")
    (workdir / "hb_health_proj.py").write_text(WORKER_MODULE)
    env = dict(os.environ, HB_APP_NAME=fleet.name, HB_BROKER_URL=url)
    workers = [
        (f"solo@{fleet.name}", fleet.solo_exchange, fleet.qs),
        (f"p1@{fleet.name}", fleet.pair_exchange, f"{fleet.qa},{fleet.qb}"),
        (f"p2@{fleet.name}", fleet.pair_exchange, fleet.qa),
    ]
    try:
        for hostname, exchange, queues in workers:
            args = ("-P", "solo", "-n", hostname, "-Q", queues, "--without-heartbeat")
            log = workdir / f"{hostname}.log"
            fleet.procs.append(
                spawn_worker("hb_health_proj", workdir, dict(env, HB_CONTROL_EXCHANGE=exchange), *args, log=log)
            )
        for worker in fleet.procs:
            worker.wait_ready(60)
        # Then until they answer. (Not through app.control.ping: on Redis it misses replies
        # every other call when short-lived apps reuse a reply queue name.)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            solo = check_workers(fleet.solo_app(), timeout=0.5, cache_seconds=0)
            pair = check_workers(fleet.pair_app(), min_workers=2, timeout=0.5, cache_seconds=0)
            if solo.ok and pair.ok:
                return fleet
    except BaseException:
        stop_fleet(fleet)
        raise
    stop_fleet(fleet)
    tails = "\n".join(worker.log.read_text(errors="replace")[-2000:] for worker in fleet.procs)
    pytest.fail(f"workers did not answer within 60 s:\n{tails}")


def stop_fleet(fleet: Fleet) -> None:
    for worker in fleet.procs:
        worker.proc.kill()
    for worker in fleet.procs:
        worker.proc.wait(timeout=30)
    delete_broker_entities(fleet.url, fleet.name, [fleet.qa, fleet.qb, fleet.qs])


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three real worker processes on each broker in turn, shared by this module's tests."""
    running = start_fleet(broker_url(request.param), tmp_path_factory.mktemp(request.param))
    yield running
    stop_fleet(running)


@pytest.fixture
def broker_cleanup() -> Iterator[list[tuple[str, str, list[str]]]]:
    """Entities to delete after the test: (broker URL, name fragment, queues)."""
    created: list[tuple[str, str, list[str]]] = []
    yield created
    for url, name, queues in created:
        delete_broker_entities(url, name, queues)


def timed(func: Any, *args: Any, **kwargs: Any) -> tuple[HealthReport, float]:
    started = time.monotonic()
    report = func(*args, **kwargs)
    return report, time.monotonic() - started


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local TCP port that accepts connections but never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


# -- workers -------------------------------------------------------------------------------------


def test_both_checks_give_the_broker_three_seconds_by_default() -> None:
    """The documented default timeout of both probes (CONTRACT §6), which their callers rely on."""
    checks = (check_workers, check_queue)
    defaults = {check.__name__: inspect.signature(check).parameters["timeout"].default for check in checks}
    assert {"check_workers": 3.0, "check_queue": 3.0} == defaults


@pytest.mark.slow
def test_one_live_worker_is_ok(fleet: Fleet) -> None:
    """A single live worker answers the ping: ok, 200, and with details its host name."""
    report = check_workers(fleet.solo_app(), details=True, cache_seconds=0)

    assert f'{{"status":"ok","workers":1,"detail":["solo@{fleet.name}"]}}' == report.to_json()
    assert (True, "ok", 200) == (report.ok, report.status, report.http_status)


@pytest.mark.slow
def test_two_live_workers_answer_without_waiting_out_the_timeout(fleet: Fleet) -> None:
    """With min_workers=2 and two live workers the answer comes in well under a second, not after 3 s."""
    report, elapsed = timed(check_workers, fleet.pair_app(), min_workers=2, timeout=3.0, cache_seconds=0)

    assert '{"status":"ok","workers":2}' == report.to_json()
    assert elapsed < 1.0


@pytest.mark.slow
def test_fewer_live_workers_than_required_is_too_few_workers(fleet: Fleet) -> None:
    """Two live workers when three are required: too_few_workers (503) after the timeout, not later."""
    report, elapsed = timed(check_workers, fleet.pair_app(), min_workers=3, timeout=1.0, cache_seconds=0)

    assert '{"status":"too_few_workers","workers":2}' == report.to_json()
    assert 503 == report.http_status
    assert 1.0 <= elapsed < 2.0


@pytest.mark.slow
def test_no_live_worker_is_no_workers_within_the_timeout(fleet: Fleet) -> None:
    """A control exchange no worker listens on: no_workers (503) within timeout + 1 s."""
    app = make_app(fleet.url, f"{fleet.name}nobody")

    report, elapsed = timed(check_workers, app, timeout=0.5, cache_seconds=0)

    assert '{"status":"no_workers","workers":0}' == report.to_json()
    assert 503 == report.http_status
    assert 0.5 <= elapsed < 1.5


@pytest.mark.slow
def test_queue_counts_only_the_workers_consuming_it(fleet: Fleet) -> None:
    """queue= counts the workers whose active queues include it: both for qa, only p1 for qb."""
    app = fleet.pair_app()

    both = check_workers(app, min_workers=2, queue=fleet.qa, details=True, cache_seconds=0)
    one, elapsed = timed(check_workers, app, queue=fleet.qb, details=True, timeout=3.0, cache_seconds=0)
    too_few = check_workers(app, min_workers=2, queue=fleet.qb, timeout=1.0, cache_seconds=0)

    expected_both = {
        "status": "ok",
        "workers": 2,
        "detail": [f"p1@{fleet.name}", f"p2@{fleet.name}"],
        "queue": fleet.qa,
    }
    assert expected_both == json.loads(both.to_json())
    assert f'{{"status":"ok","workers":1,"detail":["p1@{fleet.name}"],"queue":"{fleet.qb}"}}' == one.to_json()
    assert elapsed < 1.0
    assert f'{{"status":"too_few_workers","workers":1,"queue":"{fleet.qb}"}}' == too_few.to_json()


@pytest.mark.slow
def test_queue_no_worker_consumes_is_no_workers_while_workers_are_alive(fleet: Fleet) -> None:
    """Workers answer pings, but none consumes the queue: no_workers, the 'no workers registered' case."""
    app = fleet.pair_app()
    queue = f"{fleet.name}.orphan"

    assert check_workers(app, cache_seconds=0).ok
    report = check_workers(app, queue=queue, timeout=1.0, cache_seconds=0)

    assert f'{{"status":"no_workers","workers":0,"queue":"{queue}"}}' == report.to_json()


@pytest.mark.slow
def test_without_a_queue_only_workers_of_this_apps_queues_count(fleet: Fleet) -> None:
    """Workers on the same broker and control exchange that consume none of this app's queues are not its workers."""
    other = make_app(fleet.url, fleet.pair_exchange, task_default_queue=f"{fleet.name}.other")
    declared = make_app(
        fleet.url,
        fleet.pair_exchange,
        task_default_queue=f"{fleet.name}.other",
        task_queues=[Queue(fleet.qb)],
    )

    alone = check_workers(other, timeout=0.5, details=True, cache_seconds=0)
    by_task_queues = check_workers(declared, details=True, cache_seconds=0)

    assert '{"status":"no_workers","workers":0,"detail":[]}' == alone.to_json()
    assert f'{{"status":"ok","workers":1,"detail":["p1@{fleet.name}"]}}' == by_task_queues.to_json()


def test_two_apps_on_one_broker_count_only_their_own_worker(
    redis_url: str, unique_name: str, broker_cleanup: list[tuple[str, str, list[str]]]
) -> None:
    """Two apps share Redis (and a control exchange); only the other app has a worker: this app has none."""
    from celery.contrib.testing.worker import start_worker

    mine = make_app(redis_url, unique_name, task_default_queue=f"{unique_name}.mine")
    theirs = make_app(redis_url, unique_name, task_default_queue=f"{unique_name}.theirs")
    theirs.conf.broker_connection_retry_on_startup = True
    broker_cleanup.append((redis_url, unique_name, []))

    with start_worker(theirs, pool="solo", perform_ping_check=False, queues=[f"{unique_name}.theirs"]):
        their_report = check_workers(theirs, cache_seconds=0)
        my_report = check_workers(mine, timeout=0.5, cache_seconds=0)

    assert '{"status":"ok","workers":1}' == their_report.to_json()
    assert '{"status":"no_workers","workers":0}' == my_report.to_json()


def noop() -> None:
    """A task body."""


def coverage_app(fleet: Fleet, *, gaps: bool) -> Celery:
    """An app on the pair's exchange: entries on qa (default) and qb; with ``gaps`` an entry and a task elsewhere."""
    orphan = f"{fleet.name}.orphan"
    schedule: dict[str, Any] = {
        "on-default": {"task": f"{fleet.name}.tick", "schedule": 60.0},
        "on-b": {"task": f"{fleet.name}.tick", "schedule": 60.0, "options": {"queue": fleet.qb}},
    }
    routes = {f"{fleet.name}.b": {"queue": fleet.qb}}
    if gaps:
        schedule["lost"] = {"task": f"{fleet.name}.tick", "schedule": 60.0, "options": {"queue": orphan}}
        routes[f"{fleet.name}.export"] = {"queue": orphan}
    app = make_app(
        fleet.url,
        fleet.pair_exchange,
        task_default_queue=fleet.qa,
        task_routes=routes,
        heartbeat_urls={f"{fleet.name}.export": "https://hc-ping.com/e", f"{fleet.name}.b": "https://hc-ping.com/b"},
        beat_schedule=schedule,
    )
    for name in ("export", "b", "tick"):
        app.task(name=f"{fleet.name}.{name}")(noop)
    return app


@pytest.mark.slow
def test_coverage_reports_beat_entries_and_monitored_tasks_sent_to_unconsumed_queues(fleet: Fleet) -> None:
    """coverage=True: entries and mapped tasks routed (by option, task_routes or default) to queues nobody consumes."""
    app = coverage_app(fleet, gaps=True)

    plain = check_workers(app, min_workers=2, cache_seconds=0)
    gaps = check_workers(app, min_workers=2, coverage=True, timeout=1.0, cache_seconds=0)
    covered, elapsed = timed(
        check_workers, coverage_app(fleet, gaps=False), min_workers=2, coverage=True, timeout=60.0, cache_seconds=0
    )

    assert '{"status":"ok","workers":2}' == plain.to_json()
    orphan = f"{fleet.name}.orphan"
    expected = {
        "status": "uncovered",
        "workers": 2,
        "uncovered": [{"queue": orphan, "entries": ["lost"], "tasks": [f"{fleet.name}.export"]}],
    }
    assert expected == json.loads(gaps.to_json())
    assert 503 == gaps.http_status
    assert '{"status":"ok","workers":2}' == covered.to_json()
    assert elapsed < 30.0  # every queue covered: it returns once the answers say so, not after 60 s


SLOW_TRANSPORT = """
import time

from kombu.transport import redis

time.sleep(1.5)  # a client library that is slow to import (a loaded machine, a cold disk)


class Transport(redis.Transport):
    pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("fleet", ["redis"], indirect=True)
def test_a_transport_slow_to_import_does_not_eat_the_probes_timeout(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh process imports the broker's client library on its first probe: that is not broker time.

    Under load, importing kombu's Redis transport took up to a second here, and a CLI probe with
    --timeout 1 then reported live workers as no_workers.
    """
    from kombu.transport import TRANSPORT_ALIASES

    module = f"hb_slow_transport_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(SLOW_TRANSPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(TRANSPORT_ALIASES, "slowredis", f"{module}:Transport")
    app = make_app(fleet.url.replace("redis://", "slowredis://"), fleet.pair_exchange, task_default_queue=fleet.qa)

    report = check_workers(app, min_workers=2, timeout=1.0, cache_seconds=0)

    assert '{"status":"ok","workers":2}' == report.to_json()


@pytest.mark.slow
def test_a_burst_of_probes_shares_one_broadcast(fleet: Fleet) -> None:
    """Sixteen concurrent identical probes get one and the same answer (one broker round trip)."""
    app = fleet.pair_app()
    reports: list[HealthReport] = []
    barrier = threading.Barrier(16)

    def probe() -> None:
        barrier.wait()
        reports.append(check_workers(app, min_workers=2, cache_seconds=5.0))

    threads = [threading.Thread(target=probe) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert 16 == len(reports)
    assert 1 == len({id(report) for report in reports})
    assert reports[0] is check_workers(app, min_workers=2, cache_seconds=5.0)
    assert '{"status":"ok","workers":2}' == reports[0].to_json()


@pytest.mark.slow
def test_cached_answer_expires_and_zero_disables_the_cache(fleet: Fleet) -> None:
    """An answer is reused within cache_seconds, asked afresh after it, and never with cache_seconds=0."""
    app = fleet.pair_app()

    first = check_workers(app, min_workers=2, cache_seconds=0.3)
    again = check_workers(app, min_workers=2, cache_seconds=0.3)
    time.sleep(0.4)
    later = check_workers(app, min_workers=2, cache_seconds=0.3)
    uncached = [check_workers(app, min_workers=2, cache_seconds=0) for _ in range(2)]

    assert first is again
    assert later is not first
    assert uncached[0] is not uncached[1]
    assert first == later == uncached[0]


def keys_without_expiry(client: Any, exchange: str) -> list[str]:
    """Keys of this control exchange that Redis keeps forever (a TTL of -1), besides the workers' binding."""
    binding = f"_kombu.binding.{exchange}.pidbox"
    keys = (key.decode() for key in client.scan_iter(match=f"*{exchange}*"))
    return sorted(key for key in keys if key != binding and client.pttl(key) == -1)


@pytest.mark.slow
@pytest.mark.parametrize("fleet", ["redis"], indirect=True)
def test_probes_leave_no_reply_queue_behind_without_an_expiry_on_redis(fleet: Fleet) -> None:
    """Probes that stop early (the second worker's reply comes late) and probes that time out leave no key forever.

    A late reply pushed after the probe deleted its reply list used to recreate it with no expiry
    (about one probe in thirty here): a reply list now stays as an expiring tombstone.
    """
    import redis

    client = redis.Redis.from_url(fleet.url)
    for _ in range(20):
        assert check_workers(fleet.pair_app(), min_workers=1, cache_seconds=0).ok
    assert not check_workers(fleet.pair_app(), min_workers=3, timeout=0.3, cache_seconds=0).ok

    assert [] == keys_without_expiry(client, fleet.pair_exchange)
    client.close()


@pytest.mark.slow
@pytest.mark.parametrize("fleet", ["redis"], indirect=True)
def test_a_reply_pushed_after_the_probe_ended_expires_on_redis(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race made certain: a worker pushes its reply (kombu's LPUSH) after the probe returned; the key expires."""
    import redis

    from celery_heartbeat.health import broker

    made: list[str] = []

    def recording_uuid4() -> uuid.UUID:
        made.append(str(value := uuid.uuid4()))
        return value

    # The probe names its ticket and its reply queue with uuid4: push to both names, as a late worker would.
    monkeypatch.setattr(broker, "uuid", SimpleNamespace(uuid4=recording_uuid4))
    assert check_workers(fleet.pair_app(), min_workers=1, cache_seconds=0).ok
    monkeypatch.undo()
    client = redis.Redis.from_url(fleet.url)
    reply_lists = [f"{key}.reply.{fleet.pair_exchange}.pidbox" for key in made]

    for key in reply_lists:
        client.lpush(key, b'{"late": "reply"}')

    expiring = [key for key in reply_lists if 0 < client.pttl(key) <= 10_000]
    assert 1 == len(expiring), [(key, client.pttl(key)) for key in reply_lists]
    client.delete(*reply_lists)
    client.close()


# -- queue depth ---------------------------------------------------------------------------------


def publish(app: Celery, queue: str, priorities: list[int]) -> None:
    """Send one task message per priority to ``queue`` (created with priorities enabled), confirmed."""
    app.conf.task_queue_max_priority = 9
    if app.conf.broker_url.startswith("amqp"):  # wait for RabbitMQ to take each message
        app.conf.broker_transport_options = {"confirm_publish": True}
    for priority in priorities:
        app.send_task("hb.noop", queue=queue, priority=priority)


def test_depth_counts_messages_of_every_priority(
    real_broker_url: str, unique_name: str, broker_cleanup: list[tuple[str, str, list[str]]]
) -> None:
    """Seven messages in four priority bands: depth 7, ok under the threshold, backlog above it."""
    app = make_app(real_broker_url, unique_name)
    broker_cleanup.append((real_broker_url, unique_name, [unique_name]))
    publish(app, unique_name, [0, 0, 3, 5, 6, 9, 9])

    under = check_queue(app, unique_name, cache_seconds=0)
    at = check_queue(app, unique_name, threshold=7, cache_seconds=0)
    above = check_queue(app, unique_name, threshold=6, cache_seconds=0)

    assert f'{{"status":"ok","queue":"{unique_name}","depth":7,"threshold":1000}}' == under.to_json()
    assert ("ok", 200) == (at.status, at.http_status)
    assert f'{{"status":"backlog","queue":"{unique_name}","depth":7,"threshold":6}}' == above.to_json()
    assert 503 == above.http_status


def test_redis_priority_messages_live_in_sub_queues(
    redis_url: str, unique_name: str, broker_cleanup: list[tuple[str, str, list[str]]]
) -> None:
    """On Redis the messages above really sit in four lists (a raw LLEN would say 2), and depth sums them."""
    import redis

    app = make_app(redis_url, unique_name)
    broker_cleanup.append((redis_url, unique_name, [unique_name]))
    publish(app, unique_name, [0, 0, 3, 5, 6, 9, 9])
    client = redis.Redis.from_url(redis_url)

    lists = sorted(key for key in client.scan_iter(match=f"{unique_name}*") if client.type(key) == b"list")

    assert 4 == len(lists)
    assert 2 == client.llen(unique_name)
    assert 7 == check_queue(app, unique_name, cache_seconds=0).body["depth"]
    client.close()


def test_redis_global_keyprefix_is_honoured(
    redis_url: str, unique_name: str, broker_cleanup: list[tuple[str, str, list[str]]]
) -> None:
    """With global_keyprefix the messages live under prefixed keys, and the depth still counts all 3."""
    import redis

    prefix = f"{unique_name}pfx:"
    app = make_app(redis_url, unique_name, broker_transport_options={"global_keyprefix": prefix})
    broker_cleanup.append((redis_url, unique_name, [unique_name]))
    publish(app, unique_name, [0, 5, 9])
    client = redis.Redis.from_url(redis_url)

    assert 1 == client.llen(f"{prefix}{unique_name}")
    assert 0 == client.exists(unique_name)
    report = check_queue(app, unique_name, cache_seconds=0)

    assert f'{{"status":"ok","queue":"{unique_name}","depth":3,"threshold":1000}}' == report.to_json()
    client.close()


def test_absent_redis_queue_is_empty(redis_url: str, unique_name: str) -> None:
    """Redis deletes empty lists, so a queue it does not have is an empty queue: ok, depth 0."""
    report = check_queue(make_app(redis_url, unique_name), unique_name, cache_seconds=0)

    assert f'{{"status":"ok","queue":"{unique_name}","depth":0,"threshold":1000}}' == report.to_json()


def test_absent_rabbitmq_queue_is_unknown_queue(rabbitmq_url: str, unique_name: str) -> None:
    """RabbitMQ has no such queue: unknown_queue (503), and the passive check does not create it."""
    app = make_app(rabbitmq_url, unique_name)

    report = check_queue(app, unique_name, cache_seconds=0)
    again = check_queue(app, unique_name, cache_seconds=0)

    assert f'{{"status":"unknown_queue","queue":"{unique_name}","threshold":1000}}' == report.to_json()
    assert 503 == report.http_status
    assert "unknown_queue" == again.status


# -- broker down ---------------------------------------------------------------------------------

DOWN_URLS = {"redis": "redis://127.0.0.1:{port}/0", "rabbitmq": "amqp://guest:guest@127.0.0.1:{port}//"}


@pytest.mark.parametrize("kind", sorted(DOWN_URLS))
def test_broker_on_a_closed_port_is_down_within_the_timeout(kind: str, unique_name: str) -> None:
    """Connection refused: both checks answer down (503) within timeout + 1 s, with no retries."""
    app = make_app(DOWN_URLS[kind].format(port=free_port()), unique_name)
    load_transport(app, for_write=True)  # the client library's one-time import is not broker time

    workers, workers_elapsed = timed(check_workers, app, timeout=1.0, cache_seconds=0)
    queue, queue_elapsed = timed(check_queue, app, "default", timeout=1.0, cache_seconds=0)

    error = "broker unreachable: ConnectionRefusedError"
    assert f'{{"status":"down","error":"{error}"}}' == workers.to_json()
    expected = f'{{"status":"down","queue":"default","threshold":1000,"error":"{error}"}}'
    assert expected == queue.to_json()
    assert (503, 503) == (workers.http_status, queue.http_status)
    assert workers_elapsed < 2.0
    assert queue_elapsed < 2.0


@pytest.mark.parametrize("kind", sorted(DOWN_URLS))
def test_broker_that_never_answers_is_down_within_the_timeout(kind: str, unique_name: str, silent_port: int) -> None:
    """A port that accepts connections but never speaks: down within timeout + 1 s, never a hang."""
    app = make_app(DOWN_URLS[kind].format(port=silent_port), unique_name)
    load_transport(app, for_write=True)  # the client library's one-time import is not broker time

    workers, workers_elapsed = timed(check_workers, app, timeout=0.5, cache_seconds=0)
    queue, queue_elapsed = timed(check_queue, app, "default", timeout=0.5, cache_seconds=0)

    assert ("down", "down") == (workers.status, queue.status)
    assert "broker unreachable: TimeoutError" == workers.body["error"]
    assert workers_elapsed < 1.5
    assert queue_elapsed < 1.5


# -- the report and its arguments ----------------------------------------------------------------


def test_report_body_is_compact_json_read_only_and_led_by_status() -> None:
    """The JSON has no spaces, starts with status, and the body cannot be changed through the report."""
    report = HealthReport("backlog", {"queue": "q", "depth": 5, "threshold": 1})

    assert '{"status":"backlog","queue":"q","depth":5,"threshold":1}' == report.to_json()
    assert (False, 503) == (report.ok, report.http_status)
    with pytest.raises(TypeError):
        report.body["status"] = "ok"  # type: ignore[index]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda app: check_workers(app, timeout=0), "timeout=0: expected a finite number of seconds > 0"),
        (lambda app: check_workers(app, min_workers=0), "min_workers=0: expected an integer >= 1"),
        (lambda app: check_workers(app, queue=""), "queue='': expected a non-empty queue name"),
        (lambda app: check_queue(app, "q", threshold=-1), "threshold=-1: expected an integer >= 0"),
        (lambda app: check_queue(app, "q", threshold=True), "threshold=True: expected an integer >= 0"),
        (
            lambda app: check_queue(app, "q" * 256),
            "queue='qqqq…': expected a queue name of at most 255 characters",
        ),
        (
            lambda app: check_queue(app, "q", cache_seconds=-1),
            "cache_seconds=-1: expected a finite number of seconds >= 0",
        ),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(call: Any, message: str) -> None:
    """Bad arguments fail fast with a ConfigurationError (a ValueError) that names the argument and the value."""
    app = make_app(f"redis://127.0.0.1:{free_port()}/0", "invalid")

    with pytest.raises(ValueError) as raised:
        call(app)

    assert message == str(raised.value)
