"""The beat probe on a real `celery beat` subprocess: live while it sleeps until a far-off entry, not when frozen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .helpers import Probe, wait_until

pytestmark = pytest.mark.slow

MAX_AGE = "5"  # seconds: the writer writes every 1 s; room for a loaded machine

BEAT_MODULE = """
import os

from celery import Celery

import celery_heartbeat

app = Celery("beatprobe", broker=os.environ["BROKER"])
app.conf.task_default_queue = os.environ["QUEUE"]
app.conf.beat_schedule = {"hourly": {"task": "beatprobe.hourly", "schedule": 3600.0}}
app.conf.beat_max_loop_interval = 3600
celery_heartbeat.install(app, probe_dir=os.environ["PROBE_DIR"])
"""


def test_beat_is_live_while_sleeping_until_a_far_off_entry_and_not_when_frozen(
    tmp_path: Path, redis_url: str, unique_name: str, probe_env: dict[str, str]
) -> None:
    """Beat sleeping until its next entry (an hour away) is live well past max-age; SIGSTOP makes it
    not live within max-age plus a few seconds; a clean stop removes its file."""
    (tmp_path / "beatprobe.py").write_text(textwrap.dedent(BEAT_MODULE))
    state = tmp_path / "state"
    env = dict(probe_env, BROKER=redis_url, QUEUE=unique_name, PROBE_DIR=str(state))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    probe = Probe(state, probe_env)
    log = tmp_path / "beat.log"
    cmd = [sys.executable, "-m", "celery", "-A", "beatprobe", "beat", "--loglevel=INFO"]
    cmd += ["-s", str(tmp_path / "schedule")]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (state / "beat.json").exists() or proc.poll() is not None, 60, "beat wrote no state")
        assert (state / "beat.json").exists(), log.read_text()

        def asleep_past_max_age() -> bool:
            facts = probe.state("beat.json")
            return facts["tick"] is not None and facts["written"] - facts["tick"] > 2 * float(MAX_AGE)

        wait_until(asleep_past_max_age, 30, "beat's loop did not go to sleep")
        code, line = probe.run("beat", "--max-age", MAX_AGE)
        assert (0, True) == (code, line.startswith("live: beat: scheduler loop ran ") and "next wake in" in line), line

        proc.send_signal(signal.SIGSTOP)
        try:
            line = probe.wait(1, "beat", "--max-age", MAX_AGE, timeout=float(MAX_AGE) + 5)
            assert line.startswith("not live: beat: state not written for "), line
        finally:
            proc.send_signal(signal.SIGCONT)
        probe.wait(0, "beat", "--max-age", MAX_AGE, timeout=10)

        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        assert not (state / "beat.json").exists(), log.read_text()
        assert 2 == probe.run("beat")[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
