"""The container probe's cost against `celery inspect ping`, and a worker's throughput with probes on and off.

1. Probe cost: one real `celery worker` (prefork, 2 processes) with `heartbeat_probe_dir` set;
   `python -m celery_heartbeat.probe worker --ready` and `celery -A proj inspect ping -d <node>`
   both run as a container's exec probe would (a fresh process each time), against that worker.
   Wall time and CPU time (user + system, from the children's rusage) per call, medians.
   Targets: the probe at most 0.15 s wall and at most a tenth of inspect ping (wall and CPU).
2. Throughput: a solo worker (its task runs on the same thread as the event loop, so the probe's
   writer thread competes most) runs N tasks, with probes off and on, in alternating rounds.
   Target: on / off >= 0.99.

    python benchmarks/probe.py                                     # Redis on localhost, database 1
    python benchmarks/probe.py --broker redis://127.0.0.1:6379/1 --runs 20 --tasks 3000 --rounds 3

Queues, control exchange and counter key are unique to the run; nothing shared is flushed.
"""

from __future__ import annotations

import argparse
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

WORKER_MODULE = """
import os

import redis
from celery import Celery

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
def worker(workdir: Path, broker: str, name: str, *args: str, probe_dir: str | None) -> Iterator[str]:
    """A worker of the bench project; yields its node name once it is ready."""
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
        yield node
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
    with worker(workdir, broker, name, "-P", "prefork", "-c", "2", probe_dir=probe_dir) as node:
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


def throughput(workdir: Path, broker: str, tasks: int, probes: bool) -> float:
    """Tasks per second of one solo worker running `tasks` queued tasks."""
    name = f"pt{uuid.uuid4().hex[:8]}"
    counter = redis.Redis.from_url(broker)
    key = f"{name}:done"
    client = Celery("bench-client", broker=broker, set_as_current=False)
    client.conf.task_default_queue = name
    probe_dir = str(workdir / f"state-{name}") if probes else None
    try:
        with worker(workdir, broker, name, "-P", "solo", probe_dir=probe_dir):
            with client.producer_or_acquire() as producer:
                for _ in range(tasks):
                    client.send_task("bench.count", producer=producer, ignore_result=True)
            start = time.perf_counter()
            last, last_change = 0, time.monotonic()
            while last < tasks:
                time.sleep(0.02)
                done = int(counter.get(key) or 0)
                if done != last:
                    last, last_change = done, time.monotonic()
                elif time.monotonic() - last_change > 30:
                    raise RuntimeError(f"stuck at {done} of {tasks} tasks")
            return tasks / (time.perf_counter() - start)
    finally:
        counter.delete(key)
        counter.close()
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/1")
    parser.add_argument("--runs", type=int, default=20, help="probe and inspect ping calls each")
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds each with probes off and on")
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

        off: list[float] = []
        on: list[float] = []
        for _ in range(args.rounds):
            off.append(throughput(workdir, args.broker, args.tasks, probes=False))
            on.append(throughput(workdir, args.broker, args.tasks, probes=True))
        print(f"throughput, solo worker, {args.tasks} tasks, {args.rounds} alternating rounds (median):")
        print(f"  probes off {statistics.median(off):.0f} tasks/s   rounds: {', '.join(f'{x:.0f}' for x in off)}")
        print(f"  probes on  {statistics.median(on):.0f} tasks/s   rounds: {', '.join(f'{x:.0f}' for x in on)}")
        print(f"  ratio on / off: {statistics.median(on) / statistics.median(off):.3f}   (target >= 0.99)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
