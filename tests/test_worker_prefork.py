"""The whole story on a real `celery worker --pool=prefork` subprocess, over Redis and over RabbitMQ.

Success and failure pings come from the pool's children; a hard time limit's
failure, a lost pool process's and a terminated revoke's come from the parent process, where
Celery fires task_failure / task_revoked without a task request.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from worker_process import celery_worker

from celery_heartbeat.testing import PingReceiver

pytestmark = pytest.mark.slow

APP_MODULE = """
import os
import signal
import time

from celery import Celery

import celery_heartbeat

rx = os.environ["RECEIVER"]
app = Celery("story", broker=os.environ["BROKER"])
app.conf.task_default_queue = os.environ["QUEUE"]
app.conf.control_exchange = os.environ["QUEUE"]
app.conf.broker_connection_retry_on_startup = True
app.conf.heartbeat_urls = {
    "story.ok": rx + "/ok",
    "story.fail": {"url": rx + "/fail", "provider": "healthchecks"},
    "story.slow": {"url": rx + "/slow", "provider": "healthchecks"},
    "story.long": {"url": rx + "/long", "provider": "healthchecks", "start": True},
    "story.lost": {"url": rx + "/lost", "provider": "healthchecks"},
    "story.typo_in_name": rx + "/typo",
    "story.sentinel": rx + "/sentinel",
}


@app.task(name="story.ok")
def ok(x):
    return x + 1


@app.task(name="story.sentinel")
def sentinel():
    return None


@app.task(name="story.fail")
def fail():
    raise ValueError("nope")


@app.task(name="story.slow", time_limit=1)
def slow():
    time.sleep(30)


@app.task(name="story.long")
def long():
    time.sleep(30)


@app.task(name="story.lost")
def lost():
    os.kill(os.getpid(), signal.SIGKILL)  # the pool process dies under its task


celery_heartbeat.install(app, coalesce_seconds=0, timeout=2)
"""


@pytest.fixture
def prefork_worker(
    real_broker_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str], heartbeat_receiver: PingReceiver
) -> Iterator[tuple[Celery, Path]]:
    (tmp_path / "storyapp.py").write_text(textwrap.dedent(APP_MODULE))
    env = dict(clean_env, BROKER=real_broker_url, QUEUE=unique_name, RECEIVER=heartbeat_receiver.base_url)
    client = Celery("client", broker=real_broker_url, set_as_current=False)
    client.conf.task_default_queue = unique_name
    client.conf.control_exchange = unique_name
    try:
        with celery_worker("storyapp", tmp_path, env, "--pool=prefork", "-c", "2", f"--hostname={unique_name}@%h") as (
            _,
            log,
        ):
            yield client, log
    finally:
        client.close()


def barrier(client: Celery, rx: PingReceiver) -> None:
    """A sentinel run through the same queue, worker, hand-over channel and sender as the runs before it.

    Once its ping arrived, every event queued before it (a child's or the parent's) has been decided and sent.
    """
    client.send_task("story.sentinel")
    rx.wait_for(1, name="sentinel", timeout=20)


def test_prefork_worker_sends_success_and_failure_pings(
    prefork_worker: tuple[Celery, Path], heartbeat_receiver: PingReceiver
) -> None:
    """Children ping success once per run and failure once, with the task id as run id, on both brokers."""
    client, _log = prefork_worker
    rx = heartbeat_receiver
    # One run at a time: pings to one URL that queue up faster than they are delivered coalesce by design.
    ok_ids = []
    for i in range(3):
        ok_ids.append(client.send_task("story.ok", (i,)).id)
        rx.wait_for(i + 1, name="ok", timeout=20)
    fail_id = client.send_task("story.fail").id
    (failure,) = rx.wait_for(1, name="fail", timeout=20)
    assert ("POST", "/fail/fail", b"ValueError", fail_id) == (
        failure.method,
        failure.path,
        failure.body,
        failure.query["rid"],
    )
    barrier(client, rx)
    assert 3 == len(rx.pings_for("ok"))
    assert 3 == len(ok_ids)
    assert 1 == len(rx.pings_for("fail"))


def test_hard_time_limit_sends_one_failure_ping_from_the_parent(
    prefork_worker: tuple[Celery, Path], heartbeat_receiver: PingReceiver
) -> None:
    """A task killed by its hard time limit gets exactly one failure ping, even where Celery fires the signal twice."""
    client, _log = prefork_worker
    task_id = client.send_task("story.slow").id
    (failure,) = heartbeat_receiver.wait_for(1, name="slow", timeout=20)
    assert ("/slow/fail", b"TimeLimitExceeded", task_id) == (failure.path, failure.body, failure.query["rid"])
    barrier(client, heartbeat_receiver)
    assert 1 == len(heartbeat_receiver.pings_for("slow"))


def test_a_lost_pool_process_is_one_failure_ping_from_the_parent(
    prefork_worker: tuple[Celery, Path], heartbeat_receiver: PingReceiver
) -> None:
    """A pool process killed under its task (OOM killer, segfault) gets exactly one failure ping for that run."""
    client, _log = prefork_worker
    task_id = client.send_task("story.lost").id
    (failure,) = heartbeat_receiver.wait_for(1, name="lost", timeout=20)
    assert ("/lost/fail", b"WorkerLostError", task_id) == (failure.path, failure.body, failure.query["rid"])
    barrier(client, heartbeat_receiver)
    assert 1 == len(heartbeat_receiver.pings_for("lost"))


def test_terminated_revoke_is_a_failure(prefork_worker: tuple[Celery, Path], heartbeat_receiver: PingReceiver) -> None:
    """Revoking a running task with terminate=True sends its start, then one failure ping for the same run."""
    client, _log = prefork_worker
    task_id = client.send_task("story.long").id
    (start,) = heartbeat_receiver.wait_for(1, name="long", timeout=20)
    assert ("/long/start", task_id) == (start.path, start.query["rid"])
    time.sleep(0.3)  # the child is inside the task body now
    client.control.revoke(task_id, terminate=True)
    pings = heartbeat_receiver.wait_for(2, name="long", timeout=20)
    assert [("/long/start", task_id), ("/long/fail", task_id)] == [(p.path, p.query["rid"]) for p in pings]


def test_worker_ready_warns_once_about_a_mapping_that_matches_no_task(
    prefork_worker: tuple[Celery, Path], heartbeat_receiver: PingReceiver
) -> None:
    """A typo'd task name in heartbeat_urls is named in one startup warning, with no URL in it."""
    _, log = prefork_worker
    text = log.read_text()
    lines = [line for line in text.splitlines() if "match no registered task" in line]
    assert 1 == len(lines), text
    assert "story.typo_in_name" in lines[0]
    assert heartbeat_receiver.base_url not in text
