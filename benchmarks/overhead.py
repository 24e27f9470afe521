"""What celery-heartbeat costs a worker: its throughput beside the same worker without the library.

Two real ``celery worker`` subprocesses (prefork with 2 children, then solo) on
Redis run at the same time, each draining N trivial tasks from its own queue:
one without the library, one with it under a scenario:

    (a)  no library (a null pair: what the method itself reads when both sides are equal)
    (b)  library, healthy endpoint (default settings: at most one success ping per 10 s)
    (b0) library, healthy endpoint, heartbeat_coalesce_seconds=0 (every task pings)
    (c)  library, endpoint answering after 2 s
    (d)  library, endpoint refusing connections

Why side by side: this machine's speed drifts by tens of percent from one second
to the next (other virtual machines on the same host), so two workers run one
after the other differ by more than the few percent being measured. Run
together, both see the same machine. The ratio is the tasks the library's
worker completed divided by those of the plain worker over the same interval
(from when both have done a tenth of their tasks until one has done nine
tenths); each task bumps a Redis counter. Each worker's CPU per task over that
interval (its main process and pool processes, from /proc) is printed too. Where
it can (Linux, as root), each worker runs in a cgroup of its own, so both get
the same share of the CPU: the kernel otherwise shares it per thread, which
would favour the side with more threads. The
two start in alternating order; each scenario reports the median of ``--repeat``
pairs and their spread. Then ``(e)``, sequentially: the tutorial's inline
``requests.get(url, timeout=5)`` in the task body against the 2 s endpoint.
Then the hook: ``Hooks.on_prerun`` + ``Hooks.on_success`` timed directly, per
call, on a really installed app; and Celery's own tracer (what a worker runs for
every task) with and without the library, whose difference, against the plain
worker's CPU per task, gives the throughput the library leaves to a
microsecond's precision: the pairs cannot resolve below a few percent here (the
null pairs show by how much). Usage::

    python benchmarks/overhead.py                      # N=3000, 5 pairs, both pools
    python benchmarks/overhead.py --n 5000 --repeat 9 --pools prefork
    python benchmarks/overhead.py --library ../old-checkout   # another version of the library
    python benchmarks/overhead.py --alone --n 12000 --repeat 6 --skip-inline   # quiet machine

Targets: (b), (c), (d) at 0.97 of (a) or better; the hook under 20 us median.
The pairs print their median; the tracer line says what the hot path costs.
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import celery  # noqa: E402
import redis  # noqa: E402
from celery import Celery, signals  # noqa: E402
from celery.app.trace import build_tracer  # noqa: E402

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


NULL = Scenario("(a)  no library", "none", "healthy")
SCENARIOS = [
    NULL,
    Scenario("(b)  library, healthy endpoint", "library", "healthy"),
    Scenario("(b0) library, healthy, coalesce 0", "library", "healthy", coalesce=0.0),
    Scenario("(c)  library, 2 s latency endpoint", "library", "slow"),
    Scenario("(d)  library, refused endpoint", "library", "refused"),
]
INLINE = Scenario("(e)  inline requests.get, 2 s endpoint", "inline", "slow")


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


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        proc = todo.pop()
        if proc in stats:
            total += (int(stats[proc][11]) + int(stats[proc][12])) / tick  # utime, stime
        todo.extend(children.get(proc, []))
    return total


class CpuGroup:
    """A cgroup with the default CPU weight, so each side of a pair gets the same share of the machine
    whatever its number of threads (the kernel shares CPU per thread otherwise). Linux, as root;
    without it the pair still runs, and the output says so."""

    ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup"))  # cgroup v1 "cpu", then v2

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        for root in self.ROOTS:
            if not (root / "cgroup.procs").exists():
                continue
            try:
                path = root / name
                path.mkdir()
            except OSError:
                continue
            self.path = path
            return

    def add(self, pid: int) -> bool:
        if self.path is None:
            return False
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
            return True
        except OSError:
            return False

    def remove(self) -> None:
        """Remove the group once its last process is gone (pool processes may outlive the main one briefly)."""
        for _ in range(50):
            if self.path is None:
                return
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


@dataclass(frozen=True)
class Bench:
    """What every worker of a run shares."""

    broker: str
    urls: dict[str, str]
    module_dir: Path
    library: Path


class Side:
    """One worker draining its own queue of N published tasks; its progress read from Redis."""

    def __init__(self, bench: Bench, scenario: Scenario, pool: str, n: int) -> None:
        self.scenario, self.pool, self.n, self.bench = scenario, pool, n, bench
        self.name = name = f"bench-{uuid.uuid4().hex[:8]}"
        self.key = f"{name}:count"  # not the queue's own key
        self.store = redis.Redis.from_url(bench.broker)
        self.proc: subprocess.Popen[bytes] | None = None
        self.group = CpuGroup(name)
        self.grouped = False
        self.env = dict(os.environ)
        self.env.update(
            PYTHONPATH=os.pathsep.join([str(bench.module_dir), str(bench.library), self.env.get("PYTHONPATH", "")]),
            BENCH_BROKER=bench.broker,
            BENCH_QUEUE=name,
            BENCH_KEY=self.key,
            BENCH_MODE=scenario.mode,
            BENCH_URL=bench.urls[scenario.endpoint],
            BENCH_N=str(n),
            BENCH_COALESCE=str(scenario.coalesce),
        )

    def publish(self) -> None:
        client = Celery(self.name, broker=self.bench.broker, set_as_current=False)
        client.conf.task_default_queue = self.name
        try:
            with client.producer_or_acquire() as producer:
                for _ in range(self.n):
                    client.send_task("bench.noop", producer=producer, ignore_result=True)
        finally:
            client.close()

    def start(self) -> None:
        command = [sys.executable, "-m", "celery", "-A", "bench_app", "worker", "-P", self.pool, "-Q", self.name]
        command += ["--loglevel", "WARNING", "--without-heartbeat", "--without-mingle", "--without-gossip"]
        if self.pool == "prefork":
            command += ["-c", "2"]
        self.proc = subprocess.Popen(
            command, cwd=self.bench.module_dir, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.grouped = self.group.add(self.proc.pid)  # before it forks its pool: the children follow

    def done(self) -> int:
        return int(self.store.get(self.key) or 0)

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid) if self.proc is not None else 0.0

    def finished_rate(self) -> float:
        """Tasks per second from the first completion to the last (once all are done)."""
        first = float(self.store.get(f"{self.key}:first") or 0)
        last = float(self.store.get(f"{self.key}:last") or 0)
        return (self.n - 1) / (last - first)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.store.delete(self.name, self.key, f"{self.key}:first", f"{self.key}:last")
        self.store.close()
        self.group.remove()


@dataclass(frozen=True)
class Pair:
    ratio: float  # tasks done by the library's worker / by the plain one, over the same interval
    equal_share: bool  # each side in a cgroup of its own
    cpu_plain_ms: float  # CPU per task of the plain worker over that interval
    cpu_library_ms: float


def run_pair(bench: Bench, scenario: Scenario, pool: str, n: int, library_first: bool) -> Pair:
    """The plain worker and `scenario`'s worker side by side; both measured over the same interval."""
    plain, other = Side(bench, NULL, pool, n), Side(bench, scenario, pool, n)
    sides = [other, plain] if library_first else [plain, other]
    try:
        for side in sides:
            side.publish()
        for side in sides:
            side.start()
        deadline = time.monotonic() + 120 + n * 0.05
        begin: tuple[int, int, float, float] | None = None
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{scenario.label}: {plain.done()} and {other.done()} of {n} tasks done in time")
            a, b = plain.done(), other.done()
            if begin is None and min(a, b) >= n // 10:
                begin = (a, b, plain.cpu(), other.cpu())
            elif begin is not None and max(a, b) >= n - n // 10:
                cpu_a, cpu_b = plain.cpu(), other.cpu()
                a, b = plain.done(), other.done()
                break
            time.sleep(0.02)
        da, db = a - begin[0], b - begin[1]
        grouped = plain.grouped and other.grouped
        return Pair(db / da, grouped, (cpu_a - begin[2]) / da * 1000, (cpu_b - begin[3]) / db * 1000)
    finally:
        for side in sides:
            side.stop()


def wait_done(side: Side, count: int, deadline: float) -> None:
    """Poll `side` until it has done `count` tasks; fail the benchmark at `deadline`."""
    while side.done() < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{side.scenario.label}: {side.done()} of {side.n} tasks done in time")
        time.sleep(0.005)


def run_alone(bench: Bench, scenario: Scenario, pool: str, n: int) -> tuple[float, float]:
    """One worker alone: its tasks per second and CPU ms per task from a tenth of its tasks done to nine tenths."""
    side = Side(bench, scenario, pool, n)
    try:
        side.publish()
        side.start()
        deadline = time.monotonic() + 120 + n * 0.05
        marks = []
        for count in (n // 10, n - n // 10):
            wait_done(side, count, deadline)
            marks.append((time.monotonic(), side.cpu(), side.done()))
    finally:
        side.stop()
    (t0, cpu0, done0), (t1, cpu1, done1) = marks
    return (done1 - done0) / (t1 - t0), (cpu1 - cpu0) / (done1 - done0) * 1000


def side_by_side_pairs(bench: Bench, pool: str, n: int, repeat: int) -> dict[Scenario, list[Pair]]:
    """The default: every scenario's worker beside a plain one, round-robin so drifts touch every scenario."""
    pairs: dict[Scenario, list[Pair]] = {s: [] for s in SCENARIOS}
    for round_ in range(repeat):
        for scenario in SCENARIOS:
            pairs[scenario].append(run_pair(bench, scenario, pool, n, library_first=round_ % 2 == 1))
    return pairs


def alone_pairs(bench: Bench, pool: str, n: int, repeat: int) -> dict[Scenario, list[Pair]]:
    """--alone: every scenario's worker alone, round-robin (order reversed every other round); each
    run's throughput against the median of the plain worker's runs. For a quiet machine: there,
    long runs (--n 12000) read closer than pairs, which share the cores with each other."""
    runs: dict[Scenario, list[tuple[float, float]]] = {s: [] for s in SCENARIOS}
    for round_ in range(repeat):
        for scenario in SCENARIOS if round_ % 2 == 0 else SCENARIOS[::-1]:
            runs[scenario].append(run_alone(bench, scenario, pool, n))
    plain_rate = statistics.median(rate for rate, _ in runs[NULL])
    plain_cpu = statistics.median(cpu for _, cpu in runs[NULL])
    return {
        scenario: [Pair(rate / plain_rate, True, plain_cpu, cpu) for rate, cpu in measured]
        for scenario, measured in runs.items()
    }


def inline_rate(bench: Bench, pool: str, n: int) -> tuple[float, float]:
    """Throughput of the tutorial's inline ping, and of the plain worker run just before it."""
    rates = []
    for scenario in (NULL, INLINE):
        side = Side(bench, scenario, pool, n)
        try:
            side.publish()
            side.start()
            wait_done(side, n, time.monotonic() + 60 + n * 2.5)
            rates.append(side.finished_rate())
        finally:
            side.stop()
    return rates[0], rates[1]


def noop_app() -> tuple[Celery, Any]:
    """An app of its own (memory broker, results ignored) with the benchmark's task, for in-process timings."""
    app = Celery(f"hookbench{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)
    app.conf.task_ignore_result = True

    @app.task(name="bench.noop", shared=False)
    def noop() -> None:
        return None

    return app, noop


def hook_cost(calls: int, coalesce: float, url: str, *, success_only: bool = False) -> tuple[float, float]:
    """Median and 99th percentile, in microseconds, of on_prerun + on_success for one run
    (of on_success alone with `success_only`, the run having started untimed)."""
    app, noop = noop_app()
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


class WorkerStandIn:
    """What `worker_init` hands its receivers: something with the worker's app."""

    def __init__(self, app: Celery) -> None:
        self.app = app


def tracer_cost(calls: int, url: str, rounds: int = 3) -> tuple[float, float]:
    """Median microseconds per task through Celery's own tracer (what a worker runs for each task)
    without the library, then with it installed and started as a worker starts it: the per-task
    cost on the worker's thread, Celery's signal dispatch included, measured to the microsecond
    that the whole-worker pairs cannot resolve. Rounds alternate; the library is uninstalled
    between them, since signal receivers are process-wide."""
    plain: list[int] = []
    library: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for samples, install in ((plain, False), (library, True)):
            app, noop = noop_app()
            hb = celery_heartbeat.install(app, urls={"bench.noop": url}) if install else None
            if hb is not None:
                signals.worker_init.send(sender=WorkerStandIn(app))  # as `celery worker` does
            tracer = build_tracer("bench.noop", noop, app=app, eager=False, propagate=False)
            ids = [str(uuid.uuid4()) for _ in range(calls)]
            requests = [{"id": task_id, "task": "bench.noop", "delivery_info": {}, "hostname": "w"} for task_id in ids]
            try:
                for task_id, request in zip(ids, requests):
                    started = clock()
                    tracer(task_id, (), {}, request)
                    samples.append(clock() - started)
            finally:
                if hb is not None:
                    hb.uninstall()
    return statistics.median(plain) / 1000, statistics.median(library) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="tasks per worker and pair")
    parser.add_argument("--n-inline", type=int, default=4, help="tasks for the inline scenario (e)")
    parser.add_argument("--pools", default="prefork,solo", help="comma-separated: prefork, solo")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--repeat", type=int, default=5, help="pairs per scenario; each reports its median")
    parser.add_argument("--hook-calls", type=int, default=50_000)
    parser.add_argument("--alone", action="store_true", help="each worker alone, one after another (quiet machine)")
    parser.add_argument("--skip-inline", action="store_true", help="leave out scenario (e)")
    parser.add_argument("--library", type=Path, default=ROOT, help="a checkout whose celery_heartbeat to measure")
    args = parser.parse_args(argv)

    if not reachable(args.broker):
        print(f"Redis is not reachable at {args.broker}: benchmark skipped.")
        return 0
    print(
        f"Python {sys.version.split()[0]}, Celery {celery.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; broker {args.broker}; N={args.n}; library {args.library}"
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
        bench = Bench(args.broker, urls, module_dir, args.library.resolve())
        plain_cpu: dict[str, float] = {}
        how, runs = ("alone, against the plain worker", "runs") if args.alone else ("beside the plain worker", "pairs")
        print(f"\n{'pool':8} {how:42} {runs:>5} {'ratio':>6}  {'spread':>11}  CPU ms/task")
        for pool in [p.strip() for p in args.pools.split(",") if p.strip()]:
            measure = alone_pairs if args.alone else side_by_side_pairs
            pairs = measure(bench, pool, args.n, args.repeat)
            plain_cpu[pool] = statistics.median(m.cpu_plain_ms for measured in pairs.values() for m in measured)
            if not all(m.equal_share for measured in pairs.values() for m in measured):
                print("(no cgroup could be made: each side's CPU share followed its number of threads)")
            for scenario, measured in pairs.items():
                ratios = [m.ratio for m in measured]
                cpu_plain = statistics.median(m.cpu_plain_ms for m in measured)
                cpu_library = statistics.median(m.cpu_library_ms for m in measured)
                spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
                print(
                    f"{pool:8} {scenario.label:42} {len(ratios):5d} {statistics.median(ratios):6.3f}  {spread:>11}  "
                    f"{cpu_library:.3f} vs {cpu_plain:.3f}",
                    flush=True,
                )
            if not args.skip_inline:
                plain_rate, rate = inline_rate(bench, pool, args.n_inline)
                print(f"{pool:8} {INLINE.label:42} {'':5} {rate / plain_rate:6.3f}  (run alone, {args.n_inline} tasks)")
        pings = len(healthy.pings) + len(slow.pings)

    logging.getLogger("celery_heartbeat").addHandler(logging.NullHandler())  # the dead endpoint's warning
    dead = f"http://127.0.0.1:{free_port()}/bench"
    success_us, _ = hook_cost(args.hook_calls, 10.0, dead, success_only=True)
    default_med, default_p99 = hook_cost(args.hook_calls, 10.0, dead)
    every_med, every_p99 = hook_cost(args.hook_calls, 0.0, dead)
    print(f"\nThe hook, timed in this process ({ROOT}):")
    print(f"Hooks.on_success alone, default settings:         median {success_us:5.2f} us")
    print(f"on_prerun + on_success, default settings:         median {default_med:5.2f} us, p99 {default_p99:5.2f} us")
    print(f"on_prerun + on_success, coalesce 0, dead endpoint: median {every_med:5.2f} us, p99 {every_p99:5.2f} us")
    plain_us, library_us = tracer_cost(args.hook_calls // 5, dead)
    added = library_us - plain_us
    print(f"\nPer task through Celery's tracer: {plain_us:.2f} us without the library, {library_us:.2f} us with it")
    print(f"(+{added:.2f} us on the task's thread: signal dispatch and hook). Against the plain worker's CPU per task")
    print("measured above, the throughput it leaves, plain / (plain + added):")
    for pool, cpu_ms in plain_cpu.items():
        print(f"  {pool:8} {cpu_ms * 1000:7.0f} us per task -> {cpu_ms * 1000 / (cpu_ms * 1000 + added):.4f}")
    if "prefork" in plain_cpu:
        print("(prefork: plus the hand-over, a few us a run, measured by benchmarks/handover.py)")
    print(f"\n{pings} pings reached the endpoints; total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
