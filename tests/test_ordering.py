"""Order within a worker: after an outage of the monitoring endpoint, a monitor ends on its last event.

Each repetition runs a real prefork `-c 2` worker (see ordering_scenario.py).
Before the hand-over to the main process, each pool process retried on its own
backoff and a held-back success landed after the newer failure about half the
time; `benchmarks/ordering.py` runs 20 repetitions.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from celery import Celery
from ordering_scenario import APP_MODULE, SUCCESSES, run_once
from tcp_proxy import TcpProxy
from worker_process import celery_worker

from celery_heartbeat.testing import PingReceiver

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("repetition", range(4))
def test_the_last_ping_after_an_outage_is_the_last_runs_failure(
    repetition: int, redis_url: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """10 successes, then a failure as the last run, all during an outage: the failure arrives last."""
    outcome = run_once(redis_url, tmp_path / f"r{repetition}", clean_env)
    assert outcome.after_restore >= 2, outcome  # pings were held back, then delivered
    assert ("/order/fail", outcome.failed_run) == outcome.arrived[-1], outcome
    assert 1 == outcome.arrived.count(("/order/fail", outcome.failed_run)), outcome
    assert SUCCESSES + 2 >= len(outcome.arrived), outcome


@contextmanager
def windowed_worker(
    redis_url: str, name: str, home: Path, env: dict[str, str], monitor: str
) -> Iterator[tuple[Celery, subprocess.Popen[bytes]]]:
    """A prefork -c 2 worker of the ordering app with a 60 s coalescing window, and a client for it."""
    (home / "orderapp.py").write_text(textwrap.dedent(APP_MODULE))
    worker_env = dict(env, BROKER=redis_url, QUEUE=name, MONITOR=monitor, COALESCE="60")
    client = Celery(name, broker=redis_url, backend=redis_url, set_as_current=False)
    client.conf.task_default_queue = name
    args = ("--pool=prefork", "-c", "2", "-Q", name, f"--hostname={name}@%h")
    try:
        with celery_worker("orderapp", home, worker_env, *args) as (proc, _log):
            yield client, proc
    finally:
        client.close()


def test_coalescing_is_decided_once_per_worker_across_pool_processes(
    redis_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str], heartbeat_receiver: PingReceiver
) -> None:
    """With a 60 s window, runs on both pool processes send one success ping in all (one per process before)."""
    monitor = heartbeat_receiver.url("order")
    with windowed_worker(redis_url, unique_name, tmp_path, clean_env, monitor) as (client, proc):
        runs = [client.send_task("order.job", (False, 0.3)) for _ in range(4)]
        pids = {run.get(timeout=30) for run in runs}
        proc.terminate()  # a warm shutdown flushes every process: nothing can arrive later
        proc.wait(30)
    assert 2 == len(pids)  # both pool processes ran the task
    (ping,) = heartbeat_receiver.pings_for("order")
    assert ping.query["rid"] in {run.id for run in runs}


def test_a_recovery_after_a_failure_arrives_at_once_although_pool_processes_hold_successes(
    redis_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str], heartbeat_receiver: PingReceiver
) -> None:
    """60 s window: pool processes hold successes back, yet after a failure the next success reaches the
    monitor while the worker runs (not at shutdown or a window later), after the failure: it ends "up"."""
    monitor = heartbeat_receiver.url("order")
    with windowed_worker(redis_url, unique_name, tmp_path, clean_env, monitor) as (client, proc):
        for run in [client.send_task("order.job", (False, 0.3)) for _ in range(4)]:
            run.get(timeout=30)
        failed = client.send_task("order.job", (True,))
        failed.get(timeout=30, propagate=False)
        recovered = [client.send_task("order.job", (False, 0.3)) for _ in range(2)]
        pids = {run.get(timeout=30) for run in recovered}
        heartbeat_receiver.wait_for(
            1, name="order", predicate=lambda p: p.query.get("rid") in {r.id for r in recovered}, timeout=10
        )
        arrived = [(p.path, p.query.get("rid")) for p in heartbeat_receiver.pings_for("order")]
        proc.terminate()
        proc.wait(30)
    assert 2 == len(pids)  # both pool processes ran a recovering run
    fail_at = arrived.index(("/order/fail", failed.id))
    assert all(path == "/order" for path, _ in arrived[fail_at + 1 :]) and arrived[-1][0] == "/order", arrived


def test_tcp_proxy_refuses_while_cut_and_forwards_again_on_the_same_port() -> None:
    """The outage helper itself: cut means connection refused, restore means the same URL works again."""
    with PingReceiver() as rx, TcpProxy(rx.port) as proxy:
        assert 200 == requests.get(proxy.url("a"), timeout=5).status_code
        proxy.cut()
        with pytest.raises(requests.ConnectionError):
            requests.get(proxy.url("a"), timeout=5)
        proxy.restore()
        assert 200 == requests.get(proxy.url("a"), timeout=5).status_code
        assert ["a", "a"] == [p.name for p in rx.pings]
