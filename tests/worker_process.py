"""Real `celery worker` subprocesses for tests: start one from a generated app module, wait, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def celery_worker(
    module: str, home: Path, env: dict[str, str], *args: str, ready_timeout: float = 30.0
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run `celery -A module worker *args` from `home` (on PYTHONPATH); yield it once it logged "ready".

    The log (stdout and stderr) is `home/worker.log`. The worker is SIGTERMed, then killed, afterwards.
    """
    env = dict(env, PYTHONPATH=os.pathsep.join([str(home), env.get("PYTHONPATH", "")]))
    log = home / "worker.log"
    cmd = [sys.executable, "-m", "celery", "-A", module, "worker", "--loglevel=INFO"]
    cmd += ["--without-mingle", "--without-gossip", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_timeout
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
