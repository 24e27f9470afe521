"""Every worker pool delivers pings and flushes them at shutdown: solo, threads, gevent, eventlet.

(prefork has its own module.) Each pool runs as a real `celery worker`
subprocess on Redis; the sender is a thread, which gevent/eventlet turn into a
greenlet when they monkeypatch, so delivery never blocks the pool's hub.
"""

from __future__ import annotations

import importlib.util
import signal
import textwrap
from pathlib import Path

import pytest
from celery import Celery
from worker_process import celery_worker

from celery_heartbeat.testing import PingReceiver

pytestmark = pytest.mark.slow

APP_MODULE = """
import os

from celery import Celery

import celery_heartbeat

app = Celery("pools", broker=os.environ["BROKER"])
app.conf.task_default_queue = os.environ["QUEUE"]
app.conf.control_exchange = os.environ["QUEUE"]
app.conf.broker_connection_retry_on_startup = True


@app.task(name="pools.ok")
def ok(x):
    return x


celery_heartbeat.install(
    app,
    urls={"pools.ok": {"url": os.environ["RECEIVER"] + "/ok", "provider": "healthchecks"}},
    coalesce_seconds=0,
    send_start=True,
    timeout=2,
)
"""


@pytest.mark.parametrize("pool", ["solo", "threads", "gevent", "eventlet"])
def test_pool_delivers_start_and_success_and_flushes_on_sigterm(
    pool: str,
    redis_url: str,
    unique_name: str,
    tmp_path: Path,
    clean_env: dict[str, str],
    heartbeat_receiver: PingReceiver,
) -> None:
    """Under each pool, runs ping start and success with one run id, and a ping held back by a slow endpoint
    is delivered during warm shutdown."""
    if pool in ("gevent", "eventlet") and importlib.util.find_spec(pool) is None:
        pytest.skip(f"{pool} is not installed")
    (tmp_path / "poolsapp.py").write_text(textwrap.dedent(APP_MODULE))
    env = dict(clean_env, BROKER=redis_url, QUEUE=unique_name, RECEIVER=heartbeat_receiver.base_url)
    env["PYTHONWARNINGS"] = "ignore"
    client = Celery("client", broker=redis_url, set_as_current=False)
    client.conf.task_default_queue = unique_name
    args = (f"--pool={pool}", "-c", "2", f"--hostname={unique_name}@%h")
    with celery_worker("poolsapp", tmp_path, env, *args) as (proc, log):
        first = client.send_task("pools.ok", (1,)).id
        pings = heartbeat_receiver.wait_for(2, name="ok", timeout=20)
        assert [("/ok/start", first), ("/ok", first)] == [(p.path, p.query["rid"]) for p in pings]

        heartbeat_receiver.respond(200, delay=1.0)  # slow, not dead: the flush at shutdown gets it through
        second = client.send_task("pools.ok", (2,)).id
        heartbeat_receiver.wait_for(3, name="ok", timeout=20)  # its start arrived (answered slowly)
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        finished = [p for p in heartbeat_receiver.pings_for("ok") if p.path == "/ok" and p.query["rid"] == second]
        assert 1 == len(finished), log.read_text()
        assert "Traceback" not in log.read_text()
    client.close()
