"""The probe state files: schema, atomic write, tolerant read, and "is its process still the same one?".

Times are `time.monotonic()` readings: on Linux that is CLOCK_MONOTONIC, one
clock for every process of one boot, which wall-clock jumps (NTP, a VM resumed)
do not move. `boot_id` tells a file from before a reboot; `written_at` is wall
time, for people only.

A file left by a process that is gone (a crashed earlier container in the same
`emptyDir`: its pid is dead, or reused by another process with a different
start time, or it is from another boot) describes nobody: readers ignore it, so
it can make a new worker look neither healthy nor unhealthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any, NamedTuple

from celery_heartbeat._exceptions import ProbeStateError as ProbeStateError  # re-exported for readers

VERSION = 1
WORKER_PREFIX = "worker-"
BEAT_FILE = "beat.json"
SUFFIX = ".json"
ENV_DIR = "CELERY_HEARTBEAT_PROBE_DIR"


class Identity(NamedTuple):
    """Which process wrote a file: enough to tell it from a later process that got the same pid."""

    pid: int
    hostname: str
    boot_id: str | None
    start_ticks: int | None  # /proc/<pid>/stat starttime (clock ticks since boot), Linux only


class TaskState(NamedTuple):
    """One running task, as the worker's main process sees it (`celery.worker.state.active_requests`)."""

    id: str
    name: str
    started: float  # monotonic
    time_limit: float | None  # the hard limit in seconds; None: none set
    pid: int | None  # the process running it (the worker's own pid under solo, gevent and eventlet)


class PoolState(NamedTuple):
    impl: str  # prefork, solo, threads, gevent, eventlet, ...
    concurrency: int
    processes: list[int]  # pool process pids (prefork) or the worker's own pid
    alive: int


class WorkerState(NamedTuple):
    identity: Identity
    node: str
    written: float  # monotonic; also how the writer thread shows the process is not frozen
    written_at: str
    started: float
    phase: str  # starting | running | stopping
    broker_connected: bool
    broker_changed: float  # monotonic time of the last connect or disconnect
    loop: str  # hub (the event loop's own timer), timer (Celery's timer) or none
    loop_tick: float | None  # the loop's last sign of progress
    queues: list[str]  # queues being consumed right now
    pool: PoolState
    tasks: list[TaskState]


class BeatState(NamedTuple):
    identity: Identity
    written: float
    written_at: str
    started: float
    phase: str
    tick: float | None  # when the scheduler loop last ran
    next_wake: float | None  # when it means to run next (tick + the interval it chose)


# -- this process --------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux), or None where /proc has no answer."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    try:
        return int(fields[19])  # field 22 of stat(5); fields[0] here is field 3
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def identity() -> Identity:
    pid = os.getpid()
    return Identity(pid, socket.gethostname(), boot_id(), start_ticks(pid))


def process_gone(who: Identity) -> bool:
    """True when the process that wrote a file surely no longer runs (here, on this boot).

    On another host (a shared volume) pids mean nothing: that case is left to
    the freshness check, and reported as not gone.
    """
    if who.hostname != socket.gethostname():
        return False
    current_boot = boot_id()
    if who.boot_id and current_boot and who.boot_id != current_boot:
        return True
    try:
        os.kill(who.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user
    if who.start_ticks is not None:
        ticks = start_ticks(who.pid)
        return ticks is not None and ticks != who.start_ticks
    return False


# -- files -----------------------------------------------------------------------------


def safe_name(node: str) -> str:
    return "".join(c if c.isalnum() or c in "@._-" else "_" for c in node)


def worker_path(directory: str, node: str) -> str:
    return os.path.join(directory, f"{WORKER_PREFIX}{safe_name(node)}{SUFFIX}")


def beat_path(directory: str) -> str:
    return os.path.join(directory, BEAT_FILE)


def worker_files(directory: str) -> list[str]:
    names = sorted(n for n in os.listdir(directory) if n.startswith(WORKER_PREFIX) and n.endswith(SUFFIX))
    return [os.path.join(directory, n) for n in names]


def write_atomically(path: str, state: WorkerState | BeatState) -> None:
    """Temp file in the same directory, then rename: a reader sees the old file or the new one, never half."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(state))
    os.replace(tmp, path)


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def dumps(state: WorkerState | BeatState) -> str:
    kind = "worker" if isinstance(state, WorkerState) else "beat"
    return json.dumps({"v": VERSION, "kind": kind, **_plain(state)}, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read(path: str) -> WorkerState | BeatState:
    """Parse one state file; ProbeStateError when it is unreadable or of an unknown shape."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ProbeStateError(f"{os.path.basename(path)}: {exc}") from None
    try:
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise ProbeStateError(f"{os.path.basename(path)}: not a version {VERSION} state file")
        if data.get("kind") == "worker":
            return _worker(data)
        if data.get("kind") == "beat":
            return _beat(data)
        raise ProbeStateError(f"{os.path.basename(path)}: unknown kind {data.get('kind')!r}")
    except (KeyError, TypeError) as exc:
        raise ProbeStateError(f"{os.path.basename(path)}: missing or bad field {exc}") from None


def _identity(data: dict[str, Any]) -> Identity:
    return Identity(int(data["pid"]), str(data["hostname"]), data.get("boot_id"), data.get("start_ticks"))


def _worker(d: dict[str, Any]) -> WorkerState:
    tasks = [TaskState(**t) for t in d["tasks"]]
    return WorkerState(
        identity=_identity(d["identity"]),
        node=str(d["node"]),
        written=float(d["written"]),
        written_at=str(d["written_at"]),
        started=float(d["started"]),
        phase=str(d["phase"]),
        broker_connected=bool(d["broker_connected"]),
        broker_changed=float(d["broker_changed"]),
        loop=str(d["loop"]),
        loop_tick=None if d["loop_tick"] is None else float(d["loop_tick"]),
        queues=[str(q) for q in d["queues"]],
        pool=PoolState(**d["pool"]),
        tasks=tasks,
    )


def _beat(d: dict[str, Any]) -> BeatState:
    return BeatState(
        identity=_identity(d["identity"]),
        written=float(d["written"]),
        written_at=str(d["written_at"]),
        started=float(d["started"]),
        phase=str(d["phase"]),
        tick=None if d["tick"] is None else float(d["tick"]),
        next_wake=None if d["next_wake"] is None else float(d["next_wake"]),
    )


def wall_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
