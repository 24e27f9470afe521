"""Real `celery worker` subprocesses for tests: start one from a generated app module, wait, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class WorkerProcess:
    """A started `celery worker` and its log (stdout and stderr)."""

    proc: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the worker logged "ready." (it consumes its queues and answers broadcasts); fail with its log."""
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log.read_bytes():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL if it has not exited within 20 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def spawn_worker(module: str, home: Path, env: dict[str, str], *args: str, log: Path | None = None) -> WorkerProcess:
    """Start `celery -A module worker *args` from `home` (on PYTHONPATH), logging to `log` (home/worker.log)."""
    env = dict(env, PYTHONPATH=os.pathsep.join([str(home), env.get("PYTHONPATH", "")]))
    log = home / "worker.log" if log is None else log
    cmd = [sys.executable, "-m", "celery", "-A", module, "worker", "--loglevel=INFO"]
    cmd += ["--without-mingle", "--without-gossip", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
    return WorkerProcess(proc, log)


@contextmanager
def celery_worker(
    module: str, home: Path, env: dict[str, str], *args: str, ready_timeout: float = 30.0
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run `celery -A module worker *args` from `home` (on PYTHONPATH); yield it once it logged "ready".

    The log (stdout and stderr) is `home/worker.log`. The worker is SIGTERMed, then killed, afterwards.
    """
    worker = spawn_worker(module, home, env, *args)
    try:
        worker.wait_ready(ready_timeout)
        yield worker.proc, worker.log
    finally:
        worker.stop()
