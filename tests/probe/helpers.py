"""Probe test helpers: a worker app module, the probe command as a subprocess, a throwaway Redis."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

APP_MODULE = """
import os
import time

from celery import Celery

import celery_heartbeat

app = Celery("probeapp", broker=os.environ["BROKER"])
app.conf.task_default_queue = os.environ["QUEUE"]
app.conf.control_exchange = os.environ["QUEUE"]
app.conf.broker_connection_retry_on_startup = True


@app.task(name="probeapp.hold")
def hold(release, seconds=60.0):
    # Runs until the test creates the file `release` (or `seconds` pass): the test decides when it ends.
    deadline = time.monotonic() + seconds
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)


celery_heartbeat.install(app, probe_dir=os.environ.get("PROBE_DIR"), probe_port=os.environ.get("PROBE_PORT"))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Probe:
    """Runs `python -m celery_heartbeat.probe` as a container's exec probe would, and polls it."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env

    def run(self, kind: str = "worker", *args: str) -> tuple[int, str]:
        cmd = [sys.executable, "-m", "celery_heartbeat.probe", kind, "--dir", str(self.directory), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
        assert "" == out.stderr
        return out.returncode, out.stdout.strip()

    def wait(self, code: int, kind: str = "worker", *args: str, timeout: float, contains: str = "") -> str:
        """Poll until the probe exits with `code` and its line holds `contains`; that line."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            rc, line = self.run(kind, *args)
            if rc == code and contains in line:
                return line
            seen.append(f"{rc} {line}")
            assert time.monotonic() < deadline, "\n".join(seen[-5:])
            time.sleep(0.2)

    def state(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.directory / name).read_text())
        return data


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


class RedisServer:
    """A throwaway redis-server this test starts and stops (never the shared 6379)."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([*cmd, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        wait_until(self._answers, 10, "redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        wait_until(lambda: not self._answers(), 10, "redis-server did not stop")


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(5)
