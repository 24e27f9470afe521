"""What celery-heartbeat costs a worker: throughput with and without it, and the signal hook's own cost.

Real ``celery worker`` subprocesses (prefork with 2 children, then solo) on
Redis drain N trivial mapped tasks under each scenario:

    (a)  no library
    (b)  library, healthy endpoint (default settings: at most one success ping per 10 s)
    (b0) library, healthy endpoint, heartbeat_coalesce_seconds=0 (every task pings)
    (c)  library, endpoint answering after 2 s
    (d)  library, endpoint refusing connections
    (e)  no library; the tutorial's inline ``requests.get(url, timeout=5)`` in the
         task body, against the 2 s endpoint (fewer tasks: each one waits)

Tasks are published before the worker starts; throughput is measured from the
first task's completion to the last one's (each task bumps a Redis counter,
in every scenario alike). Scenarios run round-robin, ``--repeat`` times, and
each reports its median (and the spread, since a shared machine is noisy).
The endpoint is a ``PingReceiver``. Then the hook:
``Hooks.on_prerun`` + ``Hooks.on_success`` timed directly, per call, on a
really installed app. Usage::

    python benchmarks/overhead.py                      # N=2000, 3 rounds, both pools
    python benchmarks/overhead.py --n 5000 --repeat 5 --pools prefork --broker redis://127.0.0.1:6379/3

Targets: (b), (c), (d) at 0.97 of (a) or better; the hook under 20 us median.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import celery  # noqa: E402
import redis  # noqa: E402
from celery import Celery  # noqa: E402

import celery_heartbeat  # noqa: E402
from celery_heartbeat.testing import PingReceiver  # noqa: E402

APP = """
import os
import time

import redis
import requests
from celery import Celery

BROKER = os.environ["BENCH_BROKER"]
KEY = os.environ["BENCH_KEY"]
MODE = os.environ["BENCH_MODE"]
URL = os.environ.get("BENCH_URL", "")
N = int(os.environ["BENCH_N"])

app = Celery("bench", broker=BROKER)
app.conf.update(
    task_default_queue=os.environ["BENCH_QUEUE"],
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if MODE == "library":
    import celery_heartbeat

    celery_heartbeat.install(
        app,
        urls={"bench.noop": URL},
        coalesce_seconds=float(os.environ["BENCH_COALESCE"]),
        shutdown_timeout=1.0,
    )

_conn = {}


def _redis():
    pid = os.getpid()
    if pid not in _conn:  # one connection per process, made after the fork
        _conn[pid] = redis.Redis.from_url(BROKER)
    return _conn[pid]


@app.task(name="bench.noop")
def noop():
    if MODE == "inline":  # the tutorial's way
        try:
            requests.get(URL, timeout=5)
        except requests.RequestException:
            pass
    r = _redis()
    n = r.incr(KEY)
    if n == 1:
        r.set(KEY + ":first", time.time())
    if n == N:
        r.set(KEY + ":last", time.time())
"""


@dataclass(frozen=True)
class Scenario:
    label: str
    mode: str  # "none", "library" or "inline"
    endpoint: str  # "healthy", "slow" or "refused"
    coalesce: float = 10.0
    inline: bool = False


SCENARIOS = [
    Scenario("(a)  no library", "none", "healthy"),
    Scenario("(b)  library, healthy endpoint", "library", "healthy"),
    Scenario("(b0) library, healthy, coalesce 0", "library", "healthy", coalesce=0.0),
    Scenario("(c)  library, 2 s latency endpoint", "library", "slow"),
    Scenario("(d)  library, refused endpoint", "library", "refused"),
    Scenario("(e)  inline requests.get, 2 s endpoint", "inline", "slow", inline=True),
]


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1.0):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def worker(module_dir: Path, pool: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "celery", "-A", "bench_app", "worker", "-P", pool, "-Q", env["BENCH_QUEUE"]]
    command += ["--loglevel", "WARNING", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    if pool == "prefork":
        command += ["-c", "2"]
    proc = subprocess.Popen(command, cwd=module_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_scenario(scenario: Scenario, pool: str, n: int, broker: str, urls: dict[str, str], module_dir: Path) -> float:
    """Tasks per second from the first completion to the last."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(module_dir), str(ROOT), env.get("PYTHONPATH", "")]),
        BENCH_BROKER=broker,
        BENCH_QUEUE=name,
        BENCH_KEY=f"{name}:count",  # not the queue's own key
        BENCH_MODE=scenario.mode,
        BENCH_URL=urls[scenario.endpoint],
        BENCH_N=str(n),
        BENCH_COALESCE=str(scenario.coalesce),
    )
    store = redis.Redis.from_url(broker)
    client = Celery(name, broker=broker, set_as_current=False)
    client.conf.task_default_queue = name
    try:
        with client.producer_or_acquire() as producer:
            for _ in range(n):
                client.send_task("bench.noop", producer=producer, ignore_result=True)
        with worker(module_dir, pool, env):
            deadline = time.monotonic() + 60 + n * (2.5 if scenario.inline else 0.05)
            while store.get(f"{name}:count:last") is None:
                if time.monotonic() > deadline:
                    done = store.get(f"{name}:count")
                    raise RuntimeError(f"{scenario.label}: {done!r} of {n} tasks done in time")
                time.sleep(0.05)
        first = float(store.get(f"{name}:count:first") or 0)
        last = float(store.get(f"{name}:count:last") or 0)
        return (n - 1) / (last - first)
    finally:
        store.delete(name, f"{name}:count", f"{name}:count:first", f"{name}:count:last")
        client.close()
        store.close()


def hook_cost(calls: int, coalesce: float, url: str, *, success_only: bool = False) -> tuple[float, float]:
    """Median and 99th percentile, in microseconds, of on_prerun + on_success for one run
    (of on_success alone with `success_only`, the run having started untimed)."""
    app = Celery(f"hookbench{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)

    @app.task(name="bench.noop")
    def noop() -> None:
        return None

    hb = celery_heartbeat.install(app, urls={"bench.noop": url}, coalesce_seconds=coalesce)
    hooks = hb._hooks
    samples = []
    clock = time.perf_counter_ns
    try:
        for i in range(calls):
            task_id = f"id-{i}"
            noop.push_request(id=task_id, retries=0)
            try:
                if success_only:
                    hooks.on_prerun(sender=noop, task_id=task_id, task=noop)
                started = clock()
                if not success_only:
                    hooks.on_prerun(sender=noop, task_id=task_id, task=noop)
                hooks.on_success(sender=noop, result=None)
                samples.append(clock() - started)
            finally:
                noop.pop_request()
    finally:
        hb.uninstall()
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99)] / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="tasks per scenario (a)-(d)")
    parser.add_argument("--n-inline", type=int, default=4, help="tasks for the inline scenario (e)")
    parser.add_argument("--pools", default="prefork,solo", help="comma-separated: prefork, solo")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of (a)-(d); each reports its median")
    parser.add_argument("--hook-calls", type=int, default=50_000)
    parser.add_argument("--skip-inline", action="store_true", help="leave out scenario (e)")
    args = parser.parse_args(argv)

    if not reachable(args.broker):
        print(f"Redis is not reachable at {args.broker}: benchmark skipped.")
        return 0
    print(
        f"Python {sys.version.split()[0]}, Celery {celery.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; broker {args.broker}; N={args.n}"
    )
    started = time.monotonic()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        module_dir = Path(tmp)
        (module_dir / "bench_app.py").write_text(textwrap.dedent(APP))
        healthy = stack.enter_context(PingReceiver())
        slow = stack.enter_context(PingReceiver())
        slow.respond(200, delay=2.0)
        urls = {
            "healthy": healthy.url("bench"),
            "slow": slow.url("bench"),
            "refused": f"http://127.0.0.1:{free_port()}/bench",
        }
        header = f"{'pool':8} {'scenario':42} {'tasks':>6} {'tasks/s':>8} {'vs (a)':>7}  spread (tasks/s)"
        print(f"\n{header}")
        for pool in [p.strip() for p in args.pools.split(",") if p.strip()]:
            rates: dict[Scenario, list[float]] = {s: [] for s in SCENARIOS}
            for _ in range(args.repeat):
                for scenario in SCENARIOS:
                    if not scenario.inline:
                        rates[scenario].append(run_scenario(scenario, pool, args.n, args.broker, urls, module_dir))
            if not args.skip_inline:
                inline = SCENARIOS[-1]
                rates[inline].append(run_scenario(inline, pool, args.n_inline, args.broker, urls, module_dir))
            baseline = statistics.median(rates[SCENARIOS[0]])
            for scenario, values in rates.items():
                if not values:
                    continue
                rate = statistics.median(values)
                n = args.n_inline if scenario.inline else args.n
                spread = f"{min(values):.0f}-{max(values):.0f}" if len(values) > 1 else ""
                print(f"{pool:8} {scenario.label:42} {n:6d} {rate:8.1f} {rate / baseline:7.3f}  {spread}", flush=True)
        pings = len(healthy.pings) + len(slow.pings)

    logging.getLogger("celery_heartbeat").addHandler(logging.NullHandler())  # the dead endpoint's warning
    dead = f"http://127.0.0.1:{free_port()}/bench"
    success_us, _ = hook_cost(args.hook_calls, 10.0, dead, success_only=True)
    default_med, default_p99 = hook_cost(args.hook_calls, 10.0, dead)
    every_med, every_p99 = hook_cost(args.hook_calls, 0.0, dead)
    print(f"\nHooks.on_success alone, default settings:       median {success_us:5.2f} us")
    print(f"on_prerun + on_success, default settings:         median {default_med:5.2f} us, p99 {default_p99:5.2f} us")
    print(f"on_prerun + on_success, coalesce 0, dead endpoint: median {every_med:5.2f} us, p99 {every_p99:5.2f} us")
    print(f"\n{pings} pings reached the endpoints; total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
