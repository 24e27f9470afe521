"""What the hand-over costs: the signal hooks in a prefork pool process, and the main process's share.

In one run: `on_prerun` + `on_success` timed per call (a) where no channel exists
(solo, threads, gevent, eventlet: decide and enqueue in place) and (b) in a
forked pool process that hands both events to the main process; then the main
process's CPU time per run while its reader thread applies them; (d) the same
at a steady rate, as a busy pool hands runs over, with the reader resting 5 ms
(the previous setting) and its current pause between bursts. The endpoint
is a `PingReceiver`; default settings (coalescing 10 s). Usage::

    python benchmarks/handover.py              # 20,000 runs each
    python benchmarks/handover.py --runs 50000
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from celery import Celery  # noqa: E402

import celery_heartbeat  # noqa: E402
from celery_heartbeat.delivery import handover  # noqa: E402
from celery_heartbeat.testing import PingReceiver  # noqa: E402


def time_runs(hb: Any, task: Any, runs: int) -> list[float]:
    """Microseconds of on_prerun + on_success, per run."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        task_id = str(uuid.uuid4())
        task.push_request(id=task_id, retries=0)
        try:
            started = clock()
            hb._hooks.on_prerun(sender=task, task_id=task_id, task=task)
            hb._hooks.on_success(sender=task, result=None)
            samples.append((clock() - started) / 1000)
        finally:
            task.pop_request()
    return samples


def paced(hb: Any, task: Any, rate: int, seconds: float) -> float:
    """Main-process CPU (microseconds per run) while a forked pool process runs `rate` runs a second."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    pid = os.fork()
    if pid == 0:  # the pool process
        start, runs = time.monotonic(), int(rate * seconds)
        for i in range(runs):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            time_runs(hb, task, 1)
        os._exit(0)
    os.waitpid(pid, 0)
    assert hb._hooks.drain(30.0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / int(rate * seconds) * 1e6


def summary(samples: list[float]) -> str:
    samples = sorted(samples)
    return f"median {statistics.median(samples):6.2f} us, p99 {samples[int(len(samples) * 0.99)]:6.2f} us"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=300, help="runs per second for (d)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long (d) lasts")
    options = parser.parse_args()
    with PingReceiver() as rx:
        app = Celery(f"handover{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)

        @app.task(name="bench.noop")
        def noop() -> None:
            return None

        hb = celery_heartbeat.install(app, urls={"bench.noop": rx.url("bench")})
        local = time_runs(hb, noop, options.runs)
        print(f"(a) no channel (solo, threads, green pools):   {summary(local)}")

        hooks = hb._hooks
        hooks.on_worker_init(sender=SimpleNamespace(app=app))  # what a prefork worker's main process does
        hooks.on_before_create_process()
        before = resource.getrusage(resource.RUSAGE_SELF)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the pool process
            os.close(read)
            handed = time_runs(hb, noop, options.runs)
            os.write(write, f"(b) prefork pool process, handing over:      {summary(handed)}\n".encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as result:
            print(result.read(), end="")
        os.waitpid(pid, 0)
        assert hooks.drain(30.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"(c) main process CPU applying them:            {cpu / options.runs * 1e6:6.2f} us per run")

        # A busy pool's runs arrive spread out, not in one burst: the reader's wake-ups then count.
        current, paced_cpu = handover.BATCH_PAUSE, {}
        for pause in (0.005, current):
            handover.BATCH_PAUSE = pause
            paced_cpu[pause] = paced(hb, noop, options.rate, options.seconds)
            print(
                f"(d) main process CPU, {options.rate} runs/s spread out, reader resting {pause * 1000:3.0f} ms: "
                f"{paced_cpu[pause]:6.2f} us per run"
            )
        handover.BATCH_PAUSE = current
        print(f"    ratio {current * 1000:.0f} ms / 5 ms: {paced_cpu[current] / paced_cpu[0.005]:.2f}")
        hb.flush(10.0)
        hb.uninstall()
    return 0


if __name__ == "__main__":
    sys.exit(main())
