"""How fast pings reach their monitors, and whether a sick monitoring host holds up the others.

1. Scale: M distinct monitors (default 100, 300, 1000) whose tasks all finish
   together, one endpoint answering after 0.2 s. Each task's success goes
   through the installed library's own hook (``Hooks.on_success``, as in a worker)
   into the process's sender. Printed: the time from the last task to the last
   ping arriving, against sending them one after another (M x latency).
2. Isolation: two hanging hosts (127.0.0.2 and 127.0.0.3, never answering, 20
   monitors each) beside one healthy host (127.0.0.4): a ping to the healthy
   host every 0.25 s for ``--window`` seconds, default settings (5 s timeout).
   Printed: the healthy host's ping latency (task end to arrival), median and
   max. Then the harder case: both hosts answered before, and go silent at the
   same moment with 20 pings queued each.

Distinct loopback addresses stand in for distinct hosts. Usage::

    python benchmarks/delivery.py                     # both parts
    python benchmarks/delivery.py --monitors 300 --skip-isolation

Target: 300 monitors at 0.2 s delivered within 12 s of the last task; a healthy
host's pings within 1 s while others hang.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import celery  # noqa: E402
from celery import Celery  # noqa: E402

import celery_heartbeat  # noqa: E402
from celery_heartbeat.testing import PingReceiver  # noqa: E402

LATENCY = 0.2


def noop() -> None:
    return None


def make_app(urls: dict[str, str], **settings: Any) -> tuple[Celery, celery_heartbeat.Heartbeat, dict[str, Any]]:
    """An installed app with one task per monitor (the hook is called directly, as a worker would)."""
    app = Celery(f"bench{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)
    tasks = {name: app.task(name=name)(noop) for name in urls}
    hb = celery_heartbeat.install(app, urls=urls, **settings)
    return app, hb, tasks


def finish(hb: celery_heartbeat.Heartbeat, task: Any) -> float:
    """Run the success hook of one task, as a worker does after the task body; returns when (time.time())."""
    task.push_request(id=str(uuid.uuid4()), retries=0)
    try:
        hb._hooks.on_success(sender=task, result=None)
    finally:
        task.pop_request()
    return time.time()


def scale(monitors: int) -> tuple[float, float]:
    """Seconds from the last task to the last ping arriving, and that over M x latency."""
    with PingReceiver() as rx:
        rx.respond(200, delay=LATENCY)
        urls = {f"bench.t{i}": rx.url(f"m{i}") for i in range(monitors)}
        _, hb, tasks = make_app(urls)
        try:
            last = 0.0
            for task in tasks.values():
                last = finish(hb, task)
            pings = rx.wait_for(monitors, timeout=monitors * LATENCY + 60)
            elapsed = max(p.time for p in pings) - last
            assert hb.flush(30.0)
        finally:
            hb.uninstall()
    return elapsed, elapsed / (monitors * LATENCY)


def isolation(window: float, *, answered_before: bool) -> list[float]:
    """The healthy host's ping latencies while two other hosts hang."""
    with ExitStack() as stack:
        hanging = [stack.enter_context(PingReceiver(host=f"127.0.0.{n}")) for n in (2, 3)]
        healthy = stack.enter_context(PingReceiver(host="127.0.0.4"))
        urls = {f"sick{h}.t{i}": rx.url(f"m{i}") for h, rx in enumerate(hanging) for i in range(20)}
        probes = int(window / 0.25)
        urls.update({f"well.t{i}": healthy.url(f"m{i}") for i in range(probes)})
        _, hb, tasks = make_app(urls)
        try:
            if answered_before:
                for h in range(len(hanging)):
                    finish(hb, tasks[f"sick{h}.t0"])
                for rx in hanging:
                    rx.wait_for(1)
                assert hb.flush(5.0)
            for rx in hanging:
                rx.respond(200, delay=600)
            for name, task in tasks.items():
                if name.startswith("sick"):
                    finish(hb, task)
            sent: dict[str, float] = {}
            for i in range(probes):
                sent[f"m{i}"] = finish(hb, tasks[f"well.t{i}"])
                time.sleep(0.25)
            arrived = healthy.wait_for(probes, timeout=30)
            return [ping.time - sent[ping.name] for ping in arrived]
        finally:
            hb._wiring.delivery.close(0.0)  # no flush: the hanging hosts would hold it
            hb.uninstall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", default="100,300,1000", help="comma-separated monitor counts")
    parser.add_argument("--window", type=float, default=12.0, help="seconds of healthy pings in part 2")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-isolation", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("celery_heartbeat").addHandler(logging.NullHandler())
    logging.getLogger("celery_heartbeat").propagate = False  # the hanging hosts' warnings
    print(
        f"Python {sys.version.split()[0]}, Celery {celery.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    if not args.skip_scale:
        print(f"\n1. M monitors finishing together, endpoint latency {LATENCY} s")
        print(f"{'monitors':>9} {'last task -> last ping':>23} {'serial (M x latency)':>21} {'ratio':>7}")
        for monitors in (int(m) for m in args.monitors.split(",") if m.strip()):
            elapsed, ratio = scale(monitors)
            print(f"{monitors:9d} {elapsed:21.2f} s {monitors * LATENCY:19.1f} s {ratio:7.3f}", flush=True)
    if not args.skip_isolation:
        print(f"\n2. A healthy host's ping latency beside two hanging hosts (20 monitors each), {args.window:.0f} s")
        for label, before in (("hosts hanging from the start", False), ("both answered, then went silent", True)):
            latencies = isolation(args.window, answered_before=before)
            print(
                f"   {label:34} median {statistics.median(latencies):6.3f} s, max {max(latencies):6.3f} s "
                f"({len(latencies)} pings)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
