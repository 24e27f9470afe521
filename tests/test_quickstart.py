"""The quickstart: one command shows pings, a failure alert and a dead beat noticed, then cleans up."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _pids(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"started celery (?:worker|beat)\b.*?, pid (\d+)", output)]


def _broker_dir(output: str) -> Path:
    match = re.search(r"broker: filesystem:// in (\S+)", output)
    assert match is not None, output
    return Path(match.group(1))


def test_quickstart_shows_failure_and_missed_beat_within_a_minute(clean_env: dict[str, str]) -> None:
    """The quickstart exits 0 in under 60 s, alerting on the failed task and on the late beat-liveness."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(QUICKSTART)],
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    elapsed = time.monotonic() - started
    out = done.stdout
    assert 0 == done.returncode, out + done.stderr
    assert elapsed < 60, f"took {elapsed:.1f} s"
    assert re.search(r"ALERT invoice-sync failed: ConnectionError \(run [0-9a-f-]{36}\)", out), out
    late = re.search(r"ALERT beat-liveness is late: no ping for (\d+\.\d) s \(period 2 s \+ grace 2 s\)", out)
    assert late is not None, out
    assert 4.0 <= float(late.group(1)) < 8.0  # strictly past period + grace, shown to 0.1 s
    assert "import-feed retried, then succeeded: 0 failure pings, 1 success ping" in out
    assert re.search(r"ping  GET /weekly-crawl\b", out), out
    assert "\x1b[" not in out  # not a TTY: plain lines, no escape codes
    pids = _pids(out)
    assert 2 == len(pids), out
    assert [False, False] == [_group_alive(pid) for pid in pids]
    assert False is _broker_dir(out).exists()


def test_ctrl_c_stops_worker_and_beat(clean_env: dict[str, str]) -> None:
    """Ctrl-C (SIGINT) mid-run stops the worker's and beat's whole process groups and exits 130."""
    proc = subprocess.Popen(
        [sys.executable, str(QUICKSTART)],
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any("ping  GET /beat-liveness" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen)
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        proc.send_signal(signal.SIGINT)
        assert 130 == proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    reader.join(5)
    while not lines.empty():
        seen.append(lines.get_nowait())
    out = "".join(seen)
    assert "interrupted: stopping worker and beat" in out
    pids = _pids(out)
    assert 2 == len(pids), out
    assert [False, False] == [_group_alive(pid) for pid in pids]
    assert False is _broker_dir(out).exists()
