"""The worker probe on real `celery worker` subprocesses: live, ready, busy, frozen, broker outage, several workers.

Each test runs the probe as a container's exec probe would (`python -m celery_heartbeat.probe`) and
polls it until the expected verdict: no test asserts on how fast the machine is.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from worker_process import celery_worker

from .conftest import Home
from .helpers import APP_MODULE, free_port, redis_server, wait_until

pytestmark = pytest.mark.slow

MAX_AGE = "5"  # seconds: the writer writes every 1 s; room for a loaded machine


def _client(broker: str, queue: str) -> Celery:
    client = Celery("probe-client", broker=broker, set_as_current=False)
    client.conf.task_default_queue = queue
    return client


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _worker_home(base: Path, name: str) -> Path:
    """A separate directory (own log file) for each of several workers sharing one state dir."""
    path = base / name
    path.mkdir()
    (path / "probeapp.py").write_text(textwrap.dedent(APP_MODULE))
    return path


def test_normal_worker_is_live_and_ready_frozen_is_not_and_clean_stop_removes_the_file(
    home: Home, redis_url: str, unique_name: str
) -> None:
    """A prefork worker is live and ready (command and HTTP); SIGSTOP makes it not live within max-age
    plus a few seconds; SIGCONT brings it back; a clean stop leaves no state behind."""
    port = free_port()
    node = f"{unique_name}@probehost"
    env = dict(home.env, BROKER=redis_url, PROBE_PORT=str(port))
    with celery_worker("probeapp", home.path, env, "-P", "prefork", "-c", "2", f"--hostname={node}") as (proc, log):
        code, line = home.probe.run("worker")
        assert (0, True) == (code, line.startswith(f"live: {node}: ")), line
        line = home.probe.wait(0, "worker", "--ready", timeout=10, contains=f"consuming {unique_name}")
        assert line.startswith(f"ready: {node}: event loop ran ")

        facts = home.probe.state(f"worker-{node}.json")
        pool = facts["pool"]
        assert (proc.pid, node, "running", True, [unique_name]) == (
            facts["identity"]["pid"],
            facts["node"],
            facts["phase"],
            facts["broker_connected"],
            facts["queues"],
        )
        assert ("prefork", 2, 2, "hub") == (pool["impl"], pool["concurrency"], pool["alive"], facts["loop"])

        assert 200 == _get(port, "/livez")[0]
        code, body = _get(port, "/readyz")
        assert (200, "ok", True, True, node) == (code, body["status"], body["live"], body["ready"], body["node"])
        assert 404 == _get(port, "/other")[0]

        proc.send_signal(signal.SIGSTOP)
        try:
            line = home.probe.wait(1, "worker", "--max-age", MAX_AGE, timeout=float(MAX_AGE) + 5)
            assert line.startswith(f"not live: {node}: "), line  # the loop or the writer, whichever is older
            with pytest.raises(OSError):  # a frozen worker does not answer HTTP either
                urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1)
        finally:
            proc.send_signal(signal.SIGCONT)
        home.probe.wait(0, "worker", "--max-age", MAX_AGE, timeout=10)

        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(30), log.read_text()
    assert [] == list(home.state.iterdir())
    code, line = home.probe.run("worker")
    assert 2 == code
    assert line.startswith("no state: no live worker state file in ")


def test_solo_task_within_its_time_limit_is_busy_and_past_it_is_not_live(
    home: Home, redis_url: str, unique_name: str
) -> None:
    """Solo runs the task on the event loop's thread: within its hard time limit the stalled loop is
    "busy" (live); past the limit (solo enforces none) plus max-age the worker is not live."""
    node = f"{unique_name}@probehost"
    release = home.path / "release"
    env = dict(home.env, BROKER=redis_url)
    client = _client(redis_url, unique_name)
    with celery_worker("probeapp", home.path, env, "-P", "solo", f"--hostname={node}"):
        client.send_task("probeapp.hold", (str(release),), time_limit=4)
        line = home.probe.wait(0, "worker", "--max-age", MAX_AGE, timeout=30, contains="busy: task probeapp.hold[")
        assert "(time limit 4s)" in line
        line = home.probe.wait(1, "worker", "--max-age", MAX_AGE, timeout=30, contains="past its limit")
        assert f"not live: {node}: event loop stuck for " in line
        release.touch()
        home.probe.wait(0, "worker", "--max-age", MAX_AGE, timeout=30, contains="event loop ran")
    client.close()


def test_solo_task_without_a_time_limit_stays_live(home: Home, redis_url: str, unique_name: str) -> None:
    """With no time limit a long task is busy for as long as it runs: nothing tells it from a stuck one."""
    node = f"{unique_name}@probehost"
    release = home.path / "release"
    env = dict(home.env, BROKER=redis_url)
    client = _client(redis_url, unique_name)
    with celery_worker("probeapp", home.path, env, "-P", "solo", f"--hostname={node}"):
        client.send_task("probeapp.hold", (str(release),))
        home.probe.wait(0, "worker", "--max-age", MAX_AGE, timeout=30, contains="(no time limit)")

        def long_running() -> bool:
            facts = home.probe.state(f"worker-{node}.json")
            return bool(facts["tasks"]) and facts["written"] - facts["tasks"][0]["started"] > 2 * float(MAX_AGE)

        wait_until(long_running, 60, "the task never ran for 2 x max-age")
        code, line = home.probe.run("worker", "--max-age", MAX_AGE)
        assert (0, True) == (code, "busy: task probeapp.hold[" in line), line
        release.touch()
    client.close()


def test_broker_outage_makes_it_not_ready_but_live_throughout(home: Home, unique_name: str, tmp_path: Path) -> None:
    """A broker outage: not ready within seconds (command and HTTP), live the whole time, ready again after."""
    node = f"{unique_name}@probehost"
    port = free_port()

    def poll_ready_until(code: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            live_code, live_line = home.probe.run("worker", "--max-age", MAX_AGE)
            assert 0 == live_code, live_line  # live at every probe: no restart loop
            ready_code, line = home.probe.run("worker", "--ready", "--max-age", MAX_AGE)
            if ready_code == code:
                return line
            assert time.monotonic() < deadline, line
            time.sleep(0.2)

    with redis_server(tmp_path) as redis:
        env = dict(home.env, BROKER=redis.url, PROBE_PORT=str(port))
        with celery_worker("probeapp", home.path, env, "-P", "solo", f"--hostname={node}") as (_, log):
            poll_ready_until(0, 10)
            redis.stop()
            line = poll_ready_until(1, 15)
            assert f"not ready: {node}: broker connection lost " in line
            code, body = _get(port, "/readyz")
            assert (503, "not_ready", True, False) == (code, body["status"], body["live"], body["ready"])
            assert 200 == _get(port, "/livez")[0]
            outage_end = time.monotonic() + 2 * float(MAX_AGE)  # well past max-age: still live
            while time.monotonic() < outage_end:
                poll_ready_until(1, 0)
            redis.start()
            line = poll_ready_until(0, 60)
            assert line.startswith(f"ready: {node}: "), log.read_text()


def test_several_workers_in_one_dir_node_and_files_left_by_killed_workers(
    home: Home, redis_url: str, unique_name: str
) -> None:
    """--dir checks every worker and --node one; a file left by a killed worker makes no one look
    healthy or unhealthy (it is ignored), and a new worker of that name replaces it."""
    a, b = f"a{unique_name}@probehost", f"b{unique_name}@probehost"
    env = dict(home.env, BROKER=redis_url)
    with celery_worker("probeapp", _worker_home(home.path, "a"), env, "-P", "solo", f"--hostname={a}") as (pa, _):
        with celery_worker("probeapp", _worker_home(home.path, "b"), env, "-P", "solo", f"--hostname={b}") as (pb, _):
            code, line = home.probe.run("worker")
            assert (0, True, True) == (code, f"{a}: " in line, f"{b}: " in line), line
            code, line = home.probe.run("worker", "--node", a)
            assert (0, True, False) == (code, f"{a}: " in line, f"{b}: " in line), line
            assert 2 == home.probe.run("worker", "--node", "nobody@nowhere")[0]

            pb.send_signal(signal.SIGSTOP)
            line = home.probe.wait(1, "worker", "--max-age", MAX_AGE, timeout=float(MAX_AGE) + 5)
            assert line.startswith(f"not live: {b}: "), line
            assert 0 == home.probe.run("worker", "--node", a, "--max-age", MAX_AGE)[0]

            pb.send_signal(signal.SIGKILL)  # a crash: its file stays behind
            pb.wait(10)
            assert (home.state / f"worker-{b}.json").exists()
            code, line = home.probe.run("worker", "--max-age", MAX_AGE)
            assert (0, False) == (code, f"{b}:" in line), line
            assert "ignored 1 file(s) left by processes that are gone" in line
        pa.send_signal(signal.SIGKILL)
        pa.wait(10)
    code, line = home.probe.run("worker")
    assert (2, True) == (code, "ignored 2 file(s)" in line), line

    # A new container in the same emptyDir: the new worker of the same name replaces the leftover.
    shutil.rmtree(home.path / "b")
    with celery_worker("probeapp", _worker_home(home.path, "b"), env, "-P", "solo", f"--hostname={b}") as (pb, _):
        code, line = home.probe.run("worker", "--node", b)
        assert (0, pb.pid) == (code, home.probe.state(f"worker-{b}.json")["identity"]["pid"]), line
        assert not (home.state / f"worker-{a}.json").exists()  # swept: its process is gone


@pytest.mark.parametrize("pool", ["threads", "gevent", "eventlet"])
def test_every_pool_is_live_and_ready_and_stops_cleanly(
    pool: str, home: Home, redis_url: str, unique_name: str
) -> None:
    """The other pools (the writer thread is a greenlet under gevent and eventlet): live, ready, and no
    file left after a warm shutdown."""
    if pool in ("gevent", "eventlet") and importlib.util.find_spec(pool) is None:
        pytest.skip(f"{pool} is not installed")
    node = f"{unique_name}@probehost"
    env = dict(home.env, BROKER=redis_url)
    with celery_worker("probeapp", home.path, env, "-P", pool, "-c", "2", f"--hostname={node}") as (proc, log):
        line = home.probe.wait(0, "worker", "--ready", timeout=15, contains=f"consuming {unique_name}")
        assert line.startswith(f"ready: {node}: event loop ran "), line
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert [] == list(home.state.iterdir()), log.read_text()


def test_an_unusable_probe_dir_is_logged_and_the_worker_still_runs(
    home: Home, redis_url: str, unique_name: str
) -> None:
    """A probe directory that cannot be created never stops the worker: it logs why, and the probe fails."""
    blocker = home.path / "a-file"
    blocker.write_text("")
    env = dict(home.env, BROKER=redis_url, PROBE_DIR=str(blocker / "state"))
    with celery_worker("probeapp", home.path, env, "-P", "solo", f"--hostname={unique_name}@probehost") as (_, log):
        text = log.read_text()
        assert "celery-heartbeat: probe start failed (the worker runs on; its probes will say so)" in text
        assert 2 == home.probe.run("worker")[0]


LATE_CONFIG_MODULE = """
import os

from celery import Celery

import celery_heartbeat

app = Celery("lateapp", broker=os.environ["BROKER"])
celery_heartbeat.install(app)  # before the configuration, as with config_from_object() after it
app.conf.task_default_queue = os.environ["QUEUE"]
app.conf.control_exchange = os.environ["QUEUE"]
app.conf.heartbeat_probe_dir = os.environ["PROBE_DIR"]
app.conf.heartbeat_enabled = False  # pings off: the probes stay on
"""


def test_probe_settings_assigned_after_install_work_and_pings_off_keeps_probes_on(
    home: Home, redis_url: str, unique_name: str
) -> None:
    """heartbeat_probe_dir set after install() is read when the worker starts; heartbeat_enabled=False
    turns pings off, not the probes (a deployment must not start failing its liveness probes)."""
    (home.path / "lateapp.py").write_text(textwrap.dedent(LATE_CONFIG_MODULE))
    node = f"{unique_name}@probehost"
    env = dict(home.env, BROKER=redis_url)
    with celery_worker("lateapp", home.path, env, "-P", "solo", f"--hostname={node}"):
        line = home.probe.wait(0, "worker", "--ready", timeout=15, contains=f"consuming {unique_name}")
        assert line.startswith(f"ready: {node}: "), line
