"""The container probe's cost against `celery inspect ping`, and a worker's throughput with probes on and off.

1. Probe cost: one real `celery worker` (prefork, 2 processes) with `heartbeat_probe_dir` set;
   `python -m celery_heartbeat.probe worker --ready` and `celery -A proj inspect ping -d <node>`
   both run as a container's exec probe would (a fresh process each time), against that worker.
   Wall time and CPU time (user + system, from the children's rusage) per call, medians.
   Targets: the probe at most 0.15 s wall and at most a tenth of inspect ping (wall and CPU).
2. Throughput: two solo workers (the task runs on the event loop's thread, so the probe's writer
   thread competes most), one with probes off and one with probes on, run N tasks each side by
   side, so both see the same machine load (tasks queued first, timed once both are ready,
   start order alternating by round).
   Printed: tasks per second and the worker's CPU seconds per 1000 tasks (from /proc, the
   steadier figure on a shared machine), as on / off ratios.
   Target: on / off >= 0.99.

    python benchmarks/probe.py                                     # Redis on localhost, database 1
    python benchmarks/probe.py --broker redis://127.0.0.1:6379/1 --runs 20 --tasks 3000 --rounds 3

Queues, control exchange and counter key are unique to the run; nothing shared is flushed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from celery import Celery

from celery_heartbeat.probe.worker import WorkerRecorder
from celery_heartbeat.probe.writer import StateWriter

WORKER_MODULE = """
import os

import redis
from celery import Celery

from celery_heartbeat.probe.worker import WorkerRecorder
from celery_heartbeat.probe.writer import StateWriter

import celery_heartbeat

app = Celery(os.environ["HB_BENCH_NAME"], broker=os.environ["HB_BENCH_BROKER"])
app.conf.task_default_queue = os.environ["HB_BENCH_NAME"]
app.conf.control_exchange = os.environ["HB_BENCH_NAME"]
app.conf.worker_prefetch_multiplier = 16
_counter = redis.Redis.from_url(os.environ["HB_BENCH_BROKER"])


@app.task(name="bench.count", ignore_result=True)
def count():
    _counter.incr(os.environ["HB_BENCH_NAME"] + ":done")


celery_heartbeat.install(app, probe_dir=os.environ.get("HB_BENCH_PROBE_DIR") or None)
"""


@contextmanager
def worker(workdir: Path, broker: str, name: str, *args: str, probe_dir: str | None) -> Iterator[tuple[str, int]]:
    """A worker of the bench project; yields its node name and pid once it is ready."""
    node = f"{uuid.uuid4().hex[:6]}@{name}"
    env = dict(os.environ, HB_BENCH_NAME=name, HB_BENCH_BROKER=broker, PYTHONPATH=str(workdir))
    env["HB_BENCH_PROBE_DIR"] = probe_dir or ""
    log = workdir / f"{node}.log"
    command = [sys.executable, "-m", "celery", "-A", "hb_probe_bench", "worker", "-n", node, "-l", "info", *args]
    command += ["--without-mingle", "--without-gossip"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=workdir)
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + log.read_text()[-2000:])
            time.sleep(0.1)
        yield node, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def timed(command: list[str], env: dict[str, str], cwd: Path, quiet: bool = False) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and exit status of one run of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    code = done.returncode
    if code and not quiet:
        print(done.stdout, done.stderr, file=sys.stderr)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), code


def probe_cost(workdir: Path, broker: str, runs: int) -> dict[str, float]:
    name = f"pb{uuid.uuid4().hex[:8]}"
    probe_dir = str(workdir / f"state-{name}")
    env = dict(os.environ, HB_BENCH_NAME=name, HB_BENCH_BROKER=broker, PYTHONPATH=str(workdir))
    with worker(workdir, broker, name, "-P", "prefork", "-c", "2", probe_dir=probe_dir) as (node, _):
        probe = [sys.executable, "-m", "celery_heartbeat.probe", "worker", "--ready", "--dir", probe_dir]
        ping = [sys.executable, "-m", "celery", "-A", "hb_probe_bench", "inspect", "ping", "-d", node]
        deadline = time.monotonic() + 30
        while timed(probe, env, workdir, quiet=True)[2] != 0:  # the worker's first "ready" write
            if time.monotonic() > deadline:
                raise RuntimeError("the probe never said ready")
        results: dict[str, list[tuple[float, float]]] = {"probe": [], "inspect": []}
        for _ in range(runs):  # interleaved, so both see the same machine load
            for label, command in (("probe", probe), ("inspect", ping)):
                wall, cpu, code = timed(command, env, workdir)
                if code != 0:
                    raise RuntimeError(f"{label} exited {code}")
                results[label].append((wall, cpu))
    out = {}
    for label, samples in results.items():
        out[f"{label}_wall"] = statistics.median(w for w, _ in samples)
        out[f"{label}_cpu"] = statistics.median(c for _, c in samples)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput_pair(workdir: Path, broker: str, tasks: int, off_first: bool) -> dict[str, tuple[float, float]]:
    """One solo worker with probes off and one with probes on, side by side (same machine load).

    The tasks are queued before the workers start; both are measured from the moment both are
    ready (so one's start-up does not slow only the other) until each has run all its tasks:
    tasks per second, and CPU seconds per 1000 tasks. Which one starts first alternates by round.
    """
    counter = redis.Redis.from_url(broker)
    names = {"off": f"pt{uuid.uuid4().hex[:8]}", "on": f"pt{uuid.uuid4().hex[:8]}"}
    probe_dirs = {"off": None, "on": str(workdir / f"state-{names['on']}")}
    order = ["off", "on"] if off_first else ["on", "off"]
    out: dict[str, tuple[float, float]] = {}
    try:
        for name in names.values():
            client = Celery("bench-client", broker=broker, set_as_current=False)
            client.conf.task_default_queue = name
            with client.producer_or_acquire() as producer:
                for _ in range(tasks):
                    client.send_task("bench.count", producer=producer, ignore_result=True)
            client.close()
        with contextlib.ExitStack() as stack:
            pids: dict[str, int] = {}
            for key in order:
                started = worker(workdir, broker, names[key], "-P", "solo", probe_dir=probe_dirs[key])
                pids[key] = stack.enter_context(started)[1]
            both = time.perf_counter()
            at_both = {k: (cpu_seconds(pids[k]), int(counter.get(f"{names[k]}:done") or 0)) for k in order}
            deadline = time.monotonic() + 300
            while len(out) < 2:
                now = time.perf_counter()
                for key in order:
                    done = int(counter.get(f"{names[key]}:done") or 0)
                    if done >= tasks and key not in out:
                        cpu0, done0 = at_both[key]
                        if done == done0:
                            raise RuntimeError("a worker finished before the other started: use more --tasks")
                        cpu = cpu_seconds(pids[key]) - cpu0
                        out[key] = ((done - done0) / (now - both), 1000 * cpu / (done - done0))
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not finish in 300 s")
                time.sleep(0.01)
    finally:
        for name in names.values():
            counter.delete(f"{name}:done")
        counter.close()
    return out


def writer_cost(workdir: Path, writes: int = 2000) -> float:
    """CPU seconds of one state write (snapshot, JSON, temp file, rename), as the writer thread does once a second."""
    recorder = WorkerRecorder("bench@host", pool=None)
    writer = StateWriter(str(workdir / "worker-bench@host.json"), recorder.snapshot)
    start = time.process_time()
    for _ in range(writes):
        writer.write()
    return (time.process_time() - start) / writes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/1")
    parser.add_argument("--runs", type=int, default=20, help="probe and inspect ping calls each")
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per throughput round")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (a pair of workers each)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "hb_probe_bench.py").write_text(WORKER_MODULE)

        c = probe_cost(workdir, args.broker, args.runs)
        print(f"probe cost, median of {args.runs} calls each (fresh process per call, as an exec probe):")
        print(f"  python -m celery_heartbeat.probe       wall {c['probe_wall']:.3f} s   cpu {c['probe_cpu']:.3f} s")
        print(f"  celery inspect ping -d <node>          wall {c['inspect_wall']:.3f} s   cpu {c['inspect_cpu']:.3f} s")
        wall_ratio, cpu_ratio = c["probe_wall"] / c["inspect_wall"], c["probe_cpu"] / c["inspect_cpu"]
        print(f"  ratio probe / inspect ping: wall {wall_ratio:.3f}   cpu {cpu_ratio:.3f}   (target <= 0.1)")
        print(f"  probe wall <= 0.15 s: {'yes' if c['probe_wall'] <= 0.15 else 'NO'}")

        per_write = writer_cost(workdir)
        print(f"writer thread: {per_write * 1e3:.3f} ms CPU per write, one write a second:")
        print(f"  {per_write * 100:.3f} % of one core, so throughput on / off >= {1 - per_write:.4f} by arithmetic")
        rounds = [throughput_pair(workdir, args.broker, args.tasks, i % 2 == 0) for i in range(args.rounds)]
        print(f"throughput: two solo workers side by side, probes off and on, {args.tasks} tasks each:")
        for key in ("off", "on"):
            rates = ", ".join(f"{r[key][0]:.0f}" for r in rounds)
            cpu = statistics.median(r[key][1] for r in rounds)
            print(f"  probes {key:<3}  tasks/s per round: {rates}   cpu per 1000 tasks {cpu:.3f} s (median)")
        rate_ratios = [r["on"][0] / r["off"][0] for r in rounds]
        cpu_ratios = [r["off"][1] / r["on"][1] for r in rounds]
        print(f"  per round on / off: throughput {', '.join(f'{x:.2f}' for x in rate_ratios)}")
        print(f"                      from CPU     {', '.join(f'{x:.2f}' for x in cpu_ratios)}")
        # Start order biases a round (the worker started second runs faster here); a pair of rounds,
        # one of each order, cancels that: the geometric mean of each pair, then the median.
        rate_ratio, cpu_ratio = (
            statistics.median((r[i] * r[i + 1]) ** 0.5 for i in range(0, len(r) - 1, 2)) if len(r) > 1 else r[0]
            for r in (rate_ratios, cpu_ratios)
        )
        print(f"  ratio on / off, order-balanced pairs, median: throughput {rate_ratio:.3f}, from CPU {cpu_ratio:.3f}")
        print("  (target >= 0.99; on a shared machine the rounds spread far more than that: see the writer's cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
