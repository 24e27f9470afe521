"""Worker shutdown and prefork recycling, with real `celery worker` subprocesses on Redis.

Each worker's app module dumps its process's sender stats to a file from
`worker_process_shutdown` (children) and `worker_shutdown` (main process),
connected after celery-heartbeat's own handlers, so the files show what was
still pending once the library's flush had returned.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

import celery_heartbeat
from celery_heartbeat.testing import PingReceiver

pytestmark = pytest.mark.slow

APP_MODULE = """
import json
import os
import time

from celery import Celery, signals

import celery_heartbeat
from celery_heartbeat._heartbeat import installed

app = Celery({name!r}, broker={broker!r}, backend={broker!r})
app.conf.update(
    task_default_queue={name!r},
    control_exchange={name!r},
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
celery_heartbeat.install(app, urls={urls!r}, **{settings!r})


@app.task(name="hb.add")
def add(x, y):
    return x + y


@app.task(name="hb.stuck", time_limit=1)
def stuck():
    time.sleep(30)


def _dump(kind):
    with open(os.path.join({stats_dir!r}, "%s-%d.json" % (kind, os.getpid())), "w") as f:
        json.dump(installed(app).stats(), f)


@signals.worker_process_shutdown.connect
def _dump_child(**_):
    _dump("child")


@signals.worker_shutdown.connect
def _dump_main(**_):
    _dump("main")
"""


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    client: Celery
    log: Path
    stats_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stats(self, kind: str) -> list[dict[str, int]]:
        return [json.loads(path.read_text()) for path in sorted(self.stats_dir.glob(f"{kind}-*.json"))]

    def run(self, name: str, *args: Any, timeout: float = 20.0) -> Any:
        return self.client.send_task(name, args=args).get(timeout=timeout)

    def terminate(self, timeout: float = 30.0) -> float:
        """SIGTERM the main process; seconds until it exited."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return time.monotonic() - started


PACKAGE_DIR = Path(celery_heartbeat.__file__).resolve().parent


def our_tracebacks(log: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Tracebacks in a worker log that involve celery-heartbeat (Celery logs its own for time limits).

    A traceback is ours when one of its frames is a file of the package, or it ends in one of the
    package's exceptions. Never a match on the name alone: a checkout named `celery-heartbeat`
    puts that name into every frame of its virtualenv, Celery's included.
    """
    frame = re.compile(r'^\s*File "' + re.escape(str(package_dir)) + r"[/\\]", re.MULTILINE)
    raised = re.compile(r"^celery_heartbeat\.[\w.]+(?::|$)", re.MULTILINE)
    blocks = [block.split("\n[", 1)[0] for block in log.split("Traceback (most recent call last):")[1:]]
    return [block for block in blocks if frame.search(block) or raised.search(block)]


CHECKOUT = Path("/home/dev/celery-heartbeat")  # what `git clone` names the directory
TIME_LIMIT_LOG = f"""[2026-12-02 08:00:01,000: ERROR/MainProcess] Hard time limit (1s) exceeded for hb.stuck[1f0c]
[2026-12-02 08:00:01,001: ERROR/MainProcess] Task handler raised error: TimeLimitExceeded(1)
Traceback (most recent call last):
  File "{CHECKOUT}/.venv/lib/python3.12/site-packages/billiard/pool.py", line 684, in on_hard_timeout
    raise TimeLimitExceeded(job._timeout)
billiard.einfo.ExceptionWithTraceback:
[2026-12-02 08:00:02,000: INFO/MainProcess] Task hb.add[2a1b] succeeded in 0.01s: 2
"""


def _our_traceback(package_dir: Path) -> str:
    return f"""[2026-12-02 08:00:03,000: ERROR/ForkPoolWorker-1] celery-heartbeat: error in task_success
Traceback (most recent call last):
  File "{package_dir}/_hooks.py", line 97, in on_success
    monitor = self.hb.monitor_for_run(sender.name, request.args, request.kwargs)
KeyError: 'x'
[2026-12-02 08:00:03,001: INFO/MainProcess] Task hb.add[3c2d] succeeded in 0.01s: 3
"""


def test_traceback_filter_ignores_a_virtualenv_inside_a_checkout_named_celery_heartbeat() -> None:
    """Celery's own traceback from a venv under `celery-heartbeat/` is not ours; one through the package is."""
    package_dir = CHECKOUT / "celery_heartbeat"
    ours = _our_traceback(package_dir)
    raised = 'Traceback (most recent call last):\n  File "x.py", line 1\nceleryheartbeat\n'
    raised += "celery_heartbeat._exceptions.ConfigurationError: heartbeat_urls\n[2026: INFO] done\n"
    assert [] == our_tracebacks(TIME_LIMIT_LOG, package_dir)
    assert 1 == len(our_tracebacks(TIME_LIMIT_LOG + ours, package_dir))
    assert 1 == len(our_tracebacks(raised, package_dir))
    assert 1 == len(our_tracebacks(_our_traceback(PACKAGE_DIR)))  # the default: this test run's package


@pytest.fixture
def start_worker(tmp_path: Path, unique_name: str, redis_url: str, clean_env: dict[str, str]) -> Iterator[Any]:
    """Start `celery worker` subprocesses from a generated app module; killed after the test."""
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[Celery] = []

    def start(urls: dict[str, Any], settings: dict[str, Any], pool: str = "prefork", *extra: str) -> Worker:
        name = f"{unique_name}w{len(procs)}"  # each worker: its own directory, module and queue
        home = tmp_path / name
        stats_dir = home / "stats"
        stats_dir.mkdir(parents=True)
        module = APP_MODULE.format(name=name, broker=redis_url, urls=urls, settings=settings, stats_dir=str(stats_dir))
        (home / "hbapp.py").write_text(textwrap.dedent(module))
        env = dict(clean_env)
        env["PYTHONPATH"] = f"{home}:{env['PYTHONPATH']}"
        log = home / "worker.log"
        command = [sys.executable, "-m", "celery", "-A", "hbapp", "worker", "-P", pool, "-Q", name]
        command += ["--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"]
        with log.open("wb") as out:
            proc = subprocess.Popen([*command, *extra], cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        client = Celery(name, broker=redis_url, backend=redis_url, set_as_current=False)
        client.conf.task_default_queue = name
        clients.append(client)
        return Worker(proc, client, log, stats_dir)

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for client in clients:
            client.close()


def test_prefork_recycling_loses_no_ping(start_worker: Any) -> None:
    """With max_tasks_per_child=1 every run's success ping is delivered (or replaced by a newer one of its
    monitor) although its child exits at once: the child handed it to the main process."""
    with PingReceiver() as rx:
        rx.respond(200, delay=0.3)  # each ping is still in flight when its child wants to exit
        urls = {"hb.add": {"url": rx.url("recycled"), "provider": "healthchecks"}}
        settings = {"coalesce_seconds": 0, "timeout": 2.0, "shutdown_timeout": 5.0}
        worker = start_worker(urls, settings, "prefork", "-c", "2", "--max-tasks-per-child", "1")
        results = [worker.client.send_task("hb.add", args=(i, 1)) for i in range(4)]
        assert [i + 1 for i in range(4)] == [r.get(timeout=30) for r in results]
        rx.wait_for(1, name="recycled", timeout=20)
        worker.terminate()
        stats = worker.stats("child") + worker.stats("main")
        arrived = [p.query["rid"] for p in rx.pings_for("recycled")]
        assert 0 == worker.proc.returncode
        assert set(arrived) <= {r.id for r in results}
        assert (4, len(arrived)) == (sum(s["sent"] + s["coalesced"] for s in stats), sum(s["sent"] for s in stats))
        assert [0] * len(stats) == [s["pending"] for s in stats]
        assert [] == our_tracebacks(worker.output())


def test_solo_sigterm_flushes_a_ping_in_flight(start_worker: Any) -> None:
    """A warm shutdown waits for the ping in flight: worker_shutdown flushes the main process's sender."""
    with PingReceiver() as rx:
        rx.respond(200, delay=1.0)
        settings = {"timeout": 3.0, "shutdown_timeout": 5.0}
        worker = start_worker({"hb.add": rx.url("solo")}, settings, "solo")
        assert 3 == worker.run("hb.add", 1, 2)
        rx.wait_for(1, name="solo")  # arrived, answer pending for a second
        elapsed = worker.terminate()
        (main,) = worker.stats("main")
        assert 0 == worker.proc.returncode
        assert (1, 0) == (main["sent"], main["pending"])
        assert elapsed < 5.0
        assert [] == our_tracebacks(worker.output())


@pytest.mark.parametrize("pool", ["prefork", "solo", "threads", "gevent", "eventlet"])
def test_sigterm_with_a_hanging_endpoint_adds_at_most_the_shutdown_timeout(start_worker: Any, pool: str) -> None:
    """SIGTERM with pings pending to a hanging endpoint: they delay the exit at most heartbeat_shutdown_timeout + 2 s.

    A twin worker (same pool, same tasks) whose endpoint is healthy, so nothing is pending, is stopped at
    the same moment: the difference is what the pending pings cost the shutdown. Measuring the stuck
    worker alone would count Celery's own shutdown too (seconds for gevent/eventlet, and more on a
    loaded machine), which is not the library's to bound.
    """
    if pool in ("gevent", "eventlet") and importlib.util.find_spec(pool) is None:
        pytest.skip(f"{pool} is not installed")
    shutdown_timeout = 2.0
    with PingReceiver() as hanging, PingReceiver() as healthy:
        hanging.respond(200, delay=60)
        settings = {"timeout": 10.0, "max_attempts": 3, "shutdown_timeout": shutdown_timeout}
        extra = () if pool == "solo" else ("-c", "2")

        def urls(rx: PingReceiver) -> dict[str, Any]:
            return {"hb.add": rx.url("add"), "hb.stuck": {"url": rx.url("stuck"), "provider": "healthchecks"}}

        stuck = start_worker(urls(hanging), settings, pool, *extra)
        twin = start_worker(urls(healthy), settings, pool, *extra)
        if pool == "prefork":
            # A hard time limit fires task_failure in the main process: its sender has a ping too.
            for worker in (stuck, twin):
                worker.client.send_task("hb.stuck")
            hanging.wait_for(1, name="stuck", timeout=20)
            healthy.wait_for(1, name="stuck", timeout=20)
        assert [2, 3, 2, 3] == [worker.run("hb.add", 1, i) for worker in (stuck, twin) for i in (1, 2)]
        if pool != "prefork":  # prefork: the main process's sender holds them, behind the hanging "stuck" ping
            hanging.wait_for(1, name="add")
        healthy.wait_for(1, name="add")  # the twin has nothing left to send
        for worker in (stuck, twin):
            worker.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        stuck.proc.wait(timeout=30)
        stuck_elapsed = time.monotonic() - started
        twin.proc.wait(timeout=30)
        twin_elapsed = time.monotonic() - started
        added = stuck_elapsed - twin_elapsed
        assert added <= shutdown_timeout + 2.0, f"pings added {added:.2f}s ({stuck_elapsed:.2f} vs {twin_elapsed:.2f})"
        assert (0, 0) == (stuck.proc.returncode, twin.proc.returncode)
        assert [] == our_tracebacks(stuck.output())
