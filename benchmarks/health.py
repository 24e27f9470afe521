"""Time to a healthy answer with two live workers: check_workers(min_workers=2) vs inspect().ping().

The tutorial's probe, ``app.control.inspect(timeout=3).ping()``, always waits
out its full timeout because it cannot know that every worker has answered.
``check_workers(app, min_workers=2)`` returns as soon as two have. Both run in
one go against the same two real ``celery worker`` processes (solo pool), on
each broker given::

    python benchmarks/health.py                                   # Redis and RabbitMQ on localhost
    python benchmarks/health.py --broker redis://127.0.0.1:6379/1 --runs 50

Prints the median of each and their ratio. Target: check_workers under 100 ms
median, against the tutorial's 3 s. The result cache is off (cache_seconds=0),
so every run is a real broadcast.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from celery import Celery

from celery_heartbeat.health import check_workers

DEFAULT_BROKERS = ["redis://127.0.0.1:6379/1", "amqp://guest:guest@127.0.0.1:5672//"]

WORKER_MODULE = """
import os
from celery import Celery

app = Celery(os.environ["HB_BENCH_NAME"], broker=os.environ["HB_BENCH_BROKER"])
app.conf.control_exchange = os.environ["HB_BENCH_NAME"]
"""


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def two_workers(url: str) -> Iterator[Celery]:
    """Start two worker processes on their own control exchange; yield an app that reaches only them."""
    name = f"bench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "hb_bench_proj.py").write_text(WORKER_MODULE)
        env = dict(os.environ, HB_BENCH_NAME=name, HB_BENCH_BROKER=url, PYTHONPATH=str(workdir))
        logs = [workdir / f"w{i}.log" for i in (1, 2)]
        procs = []
        for index, log in enumerate(logs, start=1):
            command = [sys.executable, "-m", "celery", "-A", "hb_bench_proj", "worker", "-P", "solo"]
            command += ["-n", f"w{index}@{name}", "-Q", name, "-l", "info"]
            command += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
            with log.open("wb") as out:
                procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=workdir))
        app = Celery(name, broker=url, set_as_current=False)
        app.conf.control_exchange = name
        try:
            deadline = time.monotonic() + 60
            while not all(b" ready." in log.read_bytes() for log in logs):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start:\n" + logs[0].read_text()[-2000:])
                time.sleep(0.1)
            while not check_workers(app, min_workers=2, timeout=1.0, cache_seconds=0).ok:
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not answer")
            yield app
        finally:
            for proc in procs:
                proc.kill()
            for proc in procs:
                proc.wait()


def measure(url: str, runs: int, baseline_runs: int) -> None:
    with two_workers(url) as app:
        fast: list[float] = []
        statuses: list[str] = []
        for _ in range(runs):
            started = time.perf_counter()
            report = check_workers(app, min_workers=2, timeout=3.0, cache_seconds=0)
            fast.append(time.perf_counter() - started)
            statuses.append(report.status)

        slow: list[float] = []
        answered: list[int] = []
        for _ in range(baseline_runs):
            started = time.perf_counter()
            replies = app.control.inspect(timeout=3).ping() or {}
            slow.append(time.perf_counter() - started)
            answered.append(len(replies))

    fast_median, slow_median = statistics.median(fast), statistics.median(slow)
    scheme = urlsplit(url).scheme
    print(f"{scheme}: two live workers")
    print(
        f"  check_workers(min_workers=2)  median {fast_median * 1000:7.1f} ms"
        f"  (min {min(fast) * 1000:.1f}, max {max(fast) * 1000:.1f}, n={runs};"
        f" ok {statuses.count('ok')}/{runs})"
    )
    print(
        f"  inspect(timeout=3).ping()     median {slow_median * 1000:7.1f} ms"
        f"  (n={baseline_runs}; workers answering per run: {answered})"
    )
    print(f"  ratio {slow_median / fast_median:.0f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", action="append", help="broker URL (repeatable); default: Redis and RabbitMQ")
    parser.add_argument("--runs", type=int, default=30, help="check_workers runs per broker")
    parser.add_argument("--baseline-runs", type=int, default=3, help="inspect().ping() runs per broker (3 s each)")
    args = parser.parse_args()
    for url in args.broker or DEFAULT_BROKERS:
        if not reachable(url):
            print(f"{urlsplit(url).scheme}: not reachable, skipped")
            continue
        measure(url, args.runs, args.baseline_runs)


if __name__ == "__main__":
    main()
