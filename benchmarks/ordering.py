"""Order within a worker after an outage: how many of N repetitions end on the last run's failure.

Each repetition (see tests/ordering_scenario.py): a real prefork `-c 2` worker on
Redis pings one monitor through a TCP proxy; the proxy is cut, 10 runs succeed,
then the last run fails; the proxy is restored. A repetition ends right when the
last ping to arrive is that failure (a success landing after it is a missed
alarm). Usage::

    python benchmarks/ordering.py                      # 20 repetitions
    python benchmarks/ordering.py --n 5 --broker redis://127.0.0.1:6379/3
    python benchmarks/ordering.py --code /tmp/old    # workers run an older checkout (git archive)
    python benchmarks/ordering.py --coalesce 10      # the default window (pool processes hold successes)

Prints each repetition's arrival order and time, then "K of N ended right".
Target: N of N.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from ordering_scenario import run_once  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="repetitions")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/1")
    parser.add_argument("--code", default=str(ROOT), help="the workers import celery_heartbeat from here")
    parser.add_argument(
        "--coalesce", type=float, default=0.0, help="heartbeat_coalesce_seconds (10: the default; pool processes hold)"
    )
    options = parser.parse_args()
    env = dict(os.environ, COALESCE=str(options.coalesce))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (options.code, env.get("PYTHONPATH", "")) if p)
    right, seconds = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(options.n):
            outcome = run_once(options.broker, Path(tmp) / f"r{i}", env)
            right += outcome.ended_right
            seconds.append(outcome.seconds)
            order = " ".join("F" if path.endswith("/fail") else "s" for path, _ in outcome.arrived)
            verdict = "right" if outcome.ended_right else "WRONG"
            print(f"{i + 1:3d}  {verdict}  {outcome.seconds:5.1f} s  arrived: {order}", flush=True)
    median = statistics.median(seconds)
    print(f"{right} of {options.n} ended right (the failure arrived last); {median:.1f} s per repetition (median)")
    return 0 if right == options.n else 1


if __name__ == "__main__":
    sys.exit(main())
