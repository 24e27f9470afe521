"""Run the quickstart N times in a row while K processes burn CPU; print failures/N.

    python benchmarks/quickstart_soak.py --runs 50 --burners 2

The quickstart must not fail now and then on a loaded machine (it once did: kombu's
filesystem transport let the worker read a half-written message). Each run is a
fresh ``python examples/quickstart.py``; a run fails when it exits non-zero or
takes longer than --timeout seconds. The burners are busy loops started here and
stopped here.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def burn() -> None:
    """Keep one core busy until terminated."""
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="quickstart runs, one after another (N)")
    parser.add_argument("--burners", type=int, default=2, help="CPU-burning processes meanwhile (K)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a run counts as failed")
    args = parser.parse_args()

    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burners)]
    for proc in burners:
        proc.start()
    failures: list[str] = []
    durations: list[float] = []
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [sys.executable, str(QUICKSTART)], capture_output=True, text=True, timeout=args.timeout
                )
                ok, tail = done.returncode == 0, (done.stdout + done.stderr).strip().splitlines()[-12:]
                why = f"exit {done.returncode}"
            except subprocess.TimeoutExpired:
                ok, tail, why = False, [], f"timeout after {args.timeout:g} s"
            durations.append(time.monotonic() - started)
            status = "ok" if ok else f"FAILED ({why})"
            print(f"run {run:3d}/{args.runs}: {status} in {durations[-1]:.1f} s", flush=True)
            if not ok:
                failures.append(f"run {run}: {why}")
                print("\n".join(f"    {line}" for line in tail), flush=True)
    finally:
        for proc in burners:
            proc.terminate()
        for proc in burners:
            proc.join(5)
    runs = len(durations)
    mean = sum(durations) / runs if runs else 0.0
    print(f"failures/N: {len(failures)}/{runs} with {args.burners} CPU burner(s); mean run {mean:.1f} s")
    for line in failures:
        print(f"  {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
