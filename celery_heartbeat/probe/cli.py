"""`celery-heartbeat-probe worker|beat`: judge the state files, print one line, exit 0, 1 or 2.

Imports only the standard library and the reading side of this package: no
Celery, no kombu, no user app, no broker round trip.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from celery_heartbeat.probe import state
from celery_heartbeat.probe.verdict import DEFAULT_MAX_AGE, Verdict, beat_verdict, worker_verdict

OK, UNHEALTHY, NO_STATE = 0, 1, 2

DESCRIPTION = """\
Container probe (Kubernetes liveness / readiness) for Celery workers and beat.
Reads the state files a worker or beat keeps in heartbeat_probe_dir; needs no
broker and imports no Celery, so it is cheap to run every few seconds.

exit status: 0 healthy, 1 not healthy, 2 no state or bad usage (one line says why)
"""

WORKER_HELP = """\
live:  the worker's process and event loop make progress. A task running within
       its hard time limit (solo pool included) counts as busy, not dead; a task
       with no time limit counts as busy for as long as it runs. A frozen process,
       a loop stuck past a task's time limit, or every pool slot stuck past its
       limit is not live. A broker outage is not "dead": the loop then waits in
       Celery's reconnect backoff, and a restart cannot fix the broker.
ready: live, and connected to the broker and consuming at least one queue.
"""

BEAT_HELP = """\
live:  beat's scheduler loop runs: it ran no later than --max-age after the
       time it meant to wake (sleeping until a far-off entry is fine).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-heartbeat-probe",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="kind", metavar="{worker,beat}")
    commands.required = True
    for kind, text in (("worker", WORKER_HELP), ("beat", BEAT_HELP)):
        sub = commands.add_parser(
            kind,
            help=f"check the {kind}'s state file(s)",
            description=text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "--dir",
            default=os.environ.get(state.ENV_DIR),
            help=f"the state directory (heartbeat_probe_dir); default: ${state.ENV_DIR}",
        )
        sub.add_argument(
            "--max-age",
            type=float,
            default=DEFAULT_MAX_AGE,
            metavar="S",
            help=f"seconds without progress before it is not live (default {DEFAULT_MAX_AGE:g})",
        )
        if kind == "worker":
            sub.add_argument("--ready", action="store_true", help="check readiness instead of liveness")
            sub.add_argument("--node", help="check only this worker (its node name, e.g. celery@host)")
    return parser


def _load(paths: Sequence[str]) -> tuple[list[state.WorkerState | state.BeatState], list[str]]:
    """The states of processes that still run, and notes about the files skipped."""
    found: list[state.WorkerState | state.BeatState] = []
    notes: list[str] = []
    gone = 0
    for path in paths:
        try:
            current = state.read(path)
        except state.ProbeStateError as exc:
            notes.append(f"unreadable {exc}")
            continue
        if state.process_gone(current.identity):
            gone += 1  # left by a crashed earlier process: describes nobody
            continue
        found.append(current)
    if gone:
        notes.append(f"ignored {gone} file(s) left by processes that are gone")
    return found, notes


def run(argv: Sequence[str] | None = None) -> tuple[int, str]:
    args = _parser().parse_args(argv)
    if not args.dir:
        return NO_STATE, f"no state: give --dir or set ${state.ENV_DIR}"
    if not os.path.isdir(args.dir):
        return NO_STATE, f"no state: {args.dir} is not a directory (is heartbeat_probe_dir set to it?)"
    if args.max_age <= 0:
        return NO_STATE, "bad usage: --max-age must be > 0"
    if args.kind == "beat":
        paths = [state.beat_path(args.dir)] if os.path.exists(state.beat_path(args.dir)) else []
    elif args.node:
        path = state.worker_path(args.dir, args.node)
        paths = [path] if os.path.exists(path) else []
    else:
        paths = state.worker_files(args.dir)
    states, notes = _load(paths)
    note = f" ({'; '.join(notes)})" if notes else ""
    if not states:
        who = f"worker {args.node}" if getattr(args, "node", None) else args.kind
        return NO_STATE, f"no state: no live {who} state file in {args.dir}{note}"
    now = time.monotonic()
    check = "ready" if getattr(args, "ready", False) else "live"
    results: list[tuple[str, Verdict]] = []
    for current in states:
        if isinstance(current, state.WorkerState):
            results.append((current.node, worker_verdict(current, now, args.max_age)))
        else:
            results.append(("beat", beat_verdict(current, now, args.max_age)))
    bad = [(name, v) for name, v in results if not getattr(v, check)]
    shown = bad or results
    line = "; ".join(f"{name}: {v.reason}" for name, v in shown)
    if bad:
        return UNHEALTHY, f"not {check}: {line}{note}"
    return OK, f"{check}: {line}{note}"


def main(argv: Sequence[str] | None = None) -> int:
    code, line = run(argv)
    print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
