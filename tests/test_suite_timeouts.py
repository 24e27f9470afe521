"""The suite's own rule: a stuck test fails on its own and the run goes on, wherever it is stuck."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

STUCK = """
import gc
import threading


def test_stuck_in_two_finalizers_on_a_held_lock():
    lock = threading.Lock()

    class Finalized:
        def __del__(self):
            with lock:
                pass

    for _ in range(2):
        garbage = Finalized()
        garbage.cycle = garbage
    del garbage
    with lock:
        gc.collect()  # each finalizer waits for the lock this thread holds


def test_after_it():
    pass
"""


def test_a_test_stuck_where_no_signal_handler_runs_still_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    """Finalizers blocked on a lock their own thread holds (as Celery 5.3's result finalizer can be):
    an alarm signal can break only the first, so the suite's timeout must not rely on one."""
    (tmp_path / "test_stuck.py").write_text(textwrap.dedent(STUCK))
    command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    command += ["-o", "timeout=2", "-p", "no:cacheprovider", "-n", "1", "test_stuck.py"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-3000:]
    assert "FAILED test_stuck.py::test_stuck_in_two_finalizers_on_a_held_lock" in done.stdout
