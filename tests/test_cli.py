"""`celery -A proj heartbeat check|ping|health`, run as real `celery` subprocesses: output, exit codes, secrets."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from worker_process import celery_worker

from celery_heartbeat.testing import PingReceiver

pytestmark = pytest.mark.slow

SECRET = "T0kenS3cret"  # part of every monitor URL: it must never be printed
SUCCESS_ONLY = "  (success pings only: generic URLs get no failure pings)"

APP_MODULE = """
import os

from celery import Celery
import celery_heartbeat

app = Celery("{name}", broker=os.environ.get("HB_BROKER", "{broker}"))
app.conf.task_default_queue = "{name}"
app.conf.task_routes = {{"{name}.export": {{"queue": "{name}.exports"}}}}
app.conf.heartbeat_enabled = not os.environ.get("HB_DISABLED")
app.conf.control_exchange = "{name}"
app.conf.broker_connection_retry_on_startup = True
app.conf.heartbeat_max_attempts = 1
app.conf.heartbeat_urls = {{
    "{name}.report": "{base}/report-{secret}",
    "nightly": {{"url": "{base}/nightly-{secret}", "provider": "healthchecks"}},
    "broken": "{base}/broken-{secret}",
    "{name}.export": {{"url": "{base}/export-{secret}", "provider": "healthchecks"}},
}}
app.conf.beat_schedule = {{"report-hourly": {{"task": "{name}.report", "schedule": 3600.0}}}}
if os.environ.get("WITH_UNMONITORED"):
    app.conf.beat_schedule["cleanup-daily"] = {{"task": "{name}.cleanup", "schedule": 86400.0}}
if os.environ.get("WITH_ROUTED_ENTRY"):
    app.conf.beat_schedule["digest"] = {{
        "task": "{name}.report", "schedule": 600.0, "options": {{"queue": "{name}.digest"}}
    }}
celery_heartbeat.install(app)
celery_heartbeat.install_beat_liveness(app, "{base}/beat-{secret}", every=60)


@app.task(name="{name}.report")
def report():
    return None


@app.task(name="{name}.cleanup")
def cleanup():
    return None


@app.task(name="{name}.export")
def export():
    return None
"""


@dataclass
class Project:
    module: str
    cwd: Path
    env: dict[str, str]
    rx: PingReceiver

    def celery(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run `celery -A <module> heartbeat ...` and return it finished (stdout, stderr, returncode)."""
        cmd = [sys.executable, "-m", "celery", "-A", self.module, "heartbeat", *args]
        env = dict(self.env, **extra_env)
        done = subprocess.run(cmd, cwd=self.cwd, env=env, capture_output=True, text=True, timeout=60)
        assert SECRET not in done.stdout + done.stderr, done.stdout + done.stderr
        return done


@contextmanager
def make_project(broker: str, name: str, home: Path, env: dict[str, str]) -> Iterator[Project]:
    with PingReceiver() as rx:
        rx.respond(500, name=f"broken-{SECRET}")
        module = f"cliapp_{name}"
        source = APP_MODULE.format(name=name, broker=broker, base=rx.base_url, secret=SECRET)
        (home / f"{module}.py").write_text(textwrap.dedent(source))
        yield Project(module, home, dict(env, PYTHONPATH=f"{home}:{env['PYTHONPATH']}"), rx)


@pytest.fixture
def project(redis_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str]) -> Iterator[Project]:
    with make_project(redis_url, unique_name, tmp_path, clean_env) as made:
        yield made


def test_check_lists_monitors_redacted_and_strict_fails_only_when_a_periodic_task_has_none(project: Project) -> None:
    """`check` shows each beat entry and mapped task with its redacted monitor; `--strict` exits 1 on a gap."""
    listed = project.celery("check", WITH_UNMONITORED="1")
    assert 0 == listed.returncode, listed.stderr
    lines = listed.stdout.splitlines()
    entry = next(line for line in lines if line.startswith("  report-hourly:"))
    assert entry.endswith(f"-> generic {project.rx.base_url}/repo…  [heartbeat_urls]{SUCCESS_ONLY}")
    assert any(line.startswith("  cleanup-daily:") and "-> NO MONITOR" in line for line in lines)
    assert any("celery_heartbeat.beat_liveness" in line and "[beat liveness]" in line for line in lines)
    assert "1 periodic task(s) without a monitor: cleanup-daily" in listed.stdout
    assert f"  nightly -> healthchecks {project.rx.base_url}/nigh…" in lines

    strict = project.celery("check", "--strict", WITH_UNMONITORED="1")
    assert 1 == strict.returncode
    covered = project.celery("check", "--strict")
    assert (0, "Every periodic task has a monitor.") == (covered.returncode, covered.stdout.splitlines()[-1])


def test_ping_sends_one_real_ping_now_and_exits_1_when_it_fails(project: Project) -> None:
    """`ping` sends one real ping (name, URL, --start, --fail), prints status and time, and exits 1 on failure."""
    started = project.celery("ping", "nightly", "--start")
    assert 0 == started.returncode, started.stderr
    assert started.stdout.startswith(f"start ping to {project.rx.base_url}/nigh…/star…: HTTP 200 in ")
    failed = project.celery("ping", "nightly", "--fail")
    assert 0 == failed.returncode, failed.stderr
    by_url = project.celery("ping", project.rx.url(f"adhoc-{SECRET}"))
    assert 0 == by_url.returncode, by_url.stderr
    paths = [p.path for p in project.rx.pings]
    assert [f"/nightly-{SECRET}/start", f"/nightly-{SECRET}/fail", f"/adhoc-{SECRET}"] == paths

    broken = project.celery("ping", "broken")
    assert (1, "") == (broken.returncode, broken.stdout)
    assert "failed: HTTP 500" in broken.stderr
    unknown = project.celery("ping", "no-such-monitor")
    assert 1 == unknown.returncode
    assert "no monitor for no-such-monitor" in unknown.stderr
    assert 4 == len(project.rx.pings)  # the unknown name sent nothing


def test_health_exits_0_when_workers_answer_and_1_when_not(project: Project, unique_name: str) -> None:
    """`health` is a probe: 1 with no worker or too few, 0 (and JSON on request) once workers and queue are fine."""
    nobody = project.celery("health", "--timeout", "1")
    assert (1, "no_workers workers=0") == (nobody.returncode, nobody.stdout.strip())
    with celery_worker(project.module, project.cwd, project.env, "-P", "solo", "-Q", unique_name):
        deadline = time.monotonic() + 30
        healthy = project.celery("health", "--json")
        while healthy.returncode != 0 and time.monotonic() < deadline:
            healthy = project.celery("health", "--json")
        assert 0 == healthy.returncode, (project.cwd / "worker.log").read_text()
        assert {"status": "ok", "workers": 1} == json.loads(healthy.stdout)
        on_queue = project.celery("health", "--queue", unique_name)
        assert (0, "ok workers=1 queue=" + unique_name) == (on_queue.returncode, on_queue.stdout.strip())
        both = project.celery("health", "-Q", unique_name, "--threshold", "10", "--json")
        assert 0 == both.returncode, both.stdout
        assert ["ok", [1, 0]] == [
            json.loads(both.stdout)["status"],
            [check.get("workers", check.get("depth")) for check in json.loads(both.stdout)["checks"]],
        ]
        too_few = project.celery("health", "--min-workers", "2", "--timeout", "1")
        assert (1, "too_few_workers workers=1") == (too_few.returncode, too_few.stdout.strip())


def test_check_without_an_app_exits_2_saying_so(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """Without -A, `check --strict` would check Celery's empty default app and pass: it exits 2 instead."""
    env = {key: value for key, value in clean_env.items() if key != "CELERY_APP"}
    for args in (["check", "--strict"], ["check"]):
        cmd = [sys.executable, "-m", "celery", "heartbeat", *args]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

        assert 2 == done.returncode, done.stdout + done.stderr
        assert "no Celery app given: run `celery -A proj heartbeat check`" in done.stderr


def test_check_says_generic_urls_get_no_failure_pings(project: Project, unique_name: str) -> None:
    """A task pinging a generic URL is marked success-only, and a closing note says what that means."""
    listed = project.celery("check")

    lines = listed.stdout.splitlines()
    assert f"  {unique_name}.report -> generic {project.rx.base_url}/repo…  [heartbeat_urls]{SUCCESS_ONLY}" in lines
    assert f"  {unique_name}.export -> healthchecks {project.rx.base_url}/expo…  [heartbeat_urls]" in lines
    assert "1 task(s) ping generic URLs, which get success pings only: a failure sends nothing" in listed.stdout


def test_check_says_when_the_library_is_disabled_and_strict_fails(project: Project) -> None:
    """heartbeat_enabled=False: check says nothing is pinged instead of listing tasks as monitored; --strict exits 1."""
    listed = project.celery("check", HB_DISABLED="1")
    strict = project.celery("check", "--strict", HB_DISABLED="1")

    assert 0 == listed.returncode, listed.stderr
    assert listed.stdout.startswith("celery-heartbeat is DISABLED (heartbeat_enabled=False): no pings are sent")
    assert "heartbeat_enabled is False: no periodic task is monitored." == listed.stdout.splitlines()[-1]
    assert "Every periodic task has a monitor." not in listed.stdout
    assert 1 == strict.returncode


@pytest.fixture
def broker_project(
    real_broker_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str]
) -> Iterator[Project]:
    with make_project(real_broker_url, unique_name, tmp_path, clean_env) as made:
        yield made


def test_check_consumers_reports_each_entry_and_task_whose_queue_has_no_live_consumer(
    broker_project: Project, unique_name: str
) -> None:
    """A real worker consumes the default and the exports queue: covered (0); an entry sent to "digest" is not (1)."""
    project = broker_project
    queues = f"{unique_name},{unique_name}.exports"
    with celery_worker(project.module, project.cwd, project.env, "-P", "solo", "-Q", queues, "-n", f"w@{unique_name}"):
        covered = project.celery("check", "--consumers", "--timeout", "10")
        gap = project.celery("check", "--consumers", "--timeout", "2", WITH_ROUTED_ENTRY="1")

    assert 0 == covered.returncode, covered.stdout + covered.stderr
    assert f"  {unique_name}.exports: w@{unique_name}" in covered.stdout.splitlines()
    assert "Every beat entry's and monitored task's queue has a live consumer." in covered.stdout
    assert 1 == gap.returncode, gap.stdout + gap.stderr
    tail = gap.stdout.splitlines()[-2:]
    assert "1 beat entr(ies) or task(s) sent to a queue no live worker consumes (they never run):" == tail[0]
    assert f"  beat entry 'digest' (task {unique_name}.report) -> {unique_name}.digest" == tail[1]
    assert f"  {unique_name}.digest: NO CONSUMER" in gap.stdout.splitlines()


def test_check_consumers_exits_2_when_the_broker_cannot_be_reached(project: Project) -> None:
    """The broker is down: --consumers cannot know, and says so with exit 2 within its timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    down = project.celery("check", "--consumers", "--timeout", "1", HB_BROKER=f"redis://127.0.0.1:{port}/0")

    assert 2 == down.returncode, down.stdout + down.stderr
    assert "Queue consumers: cannot ask the workers: broker unreachable: ConnectionRefusedError" in down.stderr
