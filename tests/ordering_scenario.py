"""The ordering case of issue 11, shared by tests/test_ordering.py and benchmarks/ordering.py.

A prefork `-c 2` worker pings one monitor through a TCP proxy. The proxy is cut,
10 runs succeed, then the last run fails; the proxy is restored. The monitor
must end on that failure: the last ping to arrive is its failure ping.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from celery import Celery
from tcp_proxy import TcpProxy
from worker_process import celery_worker

from celery_heartbeat.testing import PingReceiver

APP_MODULE = """
import os
import time

from celery import Celery

import celery_heartbeat

name = os.environ["QUEUE"]
app = Celery(name, broker=os.environ["BROKER"], backend=os.environ["BROKER"])
app.conf.update(
    task_default_queue=name,
    control_exchange=name,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)


@app.task(name="order.job")
def job(fail, seconds=0.1):
    time.sleep(seconds)  # long enough for both pool processes to take runs
    if fail:
        raise ValueError("the last run failed")
    return os.getpid()


celery_heartbeat.install(
    app,
    urls={"order.job": {"url": os.environ["MONITOR"], "provider": "healthchecks"}},
    coalesce_seconds=float(os.environ.get("COALESCE", "0")),
    timeout=1.0,
    backoff_max=2.0,
    shutdown_timeout=5.0,
)
"""

SUCCESSES = 10


@dataclass(frozen=True)
class Outcome:
    #: (path, run id) of every ping for the monitor, in arrival order.
    arrived: list[tuple[str, str]]
    failed_run: str
    #: Pings that arrived after the proxy was restored.
    after_restore: int
    seconds: float

    @property
    def ended_right(self) -> bool:
        """The last ping to arrive is the failure of the last run."""
        return bool(self.arrived) and self.arrived[-1] == ("/order/fail", self.failed_run)


def run_once(broker_url: str, home: Path, env: dict[str, str]) -> Outcome:
    """One repetition, with its own worker, queue, receiver and proxy."""
    started = time.monotonic()
    name = f"o{uuid.uuid4().hex[:10]}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "orderapp.py").write_text(textwrap.dedent(APP_MODULE))
    client = Celery(name, broker=broker_url, backend=broker_url, set_as_current=False)
    client.conf.task_default_queue = name
    with PingReceiver() as rx, TcpProxy(rx.port) as proxy:
        worker_env = dict(env, BROKER=broker_url, QUEUE=name, MONITOR=proxy.url("order"))
        args = ("--pool=prefork", "-c", "2", "-Q", name, f"--hostname={name}@%h")
        try:
            with celery_worker("orderapp", home, worker_env, *args) as (proc, _log):
                warm = client.send_task("order.job", (False,))
                warm.get(timeout=30)
                rx.wait_for(1, name="order", timeout=30)  # the path works end to end before the outage
                proxy.cut()
                runs = [client.send_task("order.job", (False,)) for _ in range(SUCCESSES)]
                for run in runs:
                    run.get(timeout=30)
                last = client.send_task("order.job", (True,))
                last.get(timeout=30, propagate=False)
                assert "FAILURE" == last.state
                restored_at = time.time()
                proxy.restore()
                rx.wait_for(1, name="order", predicate=lambda p: p.path == "/order/fail", timeout=60)
                # A warm shutdown flushes whatever any process still holds: nothing can arrive later.
                proc.terminate()
                proc.wait(30)
        finally:
            client.close()
        pings = rx.pings_for("order")
    return Outcome(
        arrived=[(p.path, p.query.get("rid", "")) for p in pings],
        failed_run=last.id,
        after_restore=sum(1 for p in pings if p.time >= restored_at),
        seconds=time.monotonic() - started,
    )
