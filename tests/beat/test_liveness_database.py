"""Beat liveness with django-celery-beat's DatabaseScheduler: the row follows the setting across beat restarts."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from celery import Celery
from support import write_django_settings

import celery_heartbeat
from celery_heartbeat._tasks import BEAT_TASK
from celery_heartbeat.beat.liveness import ENTRY_NAME

pytestmark = pytest.mark.slow

APP = """
import faulthandler
import os
import signal

faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for stacks if beat will not stop

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hb_db_settings")
import django

django.setup()

from celery import Celery
import celery_heartbeat

app = Celery("{name}", broker="memory://")
app.conf.beat_scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
app.conf.heartbeat_beat_url = os.environ.get("HB_BEAT_URL") or None
celery_heartbeat.install(app)
"""

MIGRATE = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", "django_celery_beat", verbosity=0)
"""


def liveness_row(db: Path) -> int | None:
    """The `enabled` column of the beat-liveness row (None: no row)."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT enabled FROM django_celery_beat_periodictask WHERE name = ?", (ENTRY_NAME,))
        found = row.fetchone()
    return None if found is None else int(found[0])


def run_beat_until(home: Path, env: dict[str, str], module: str, db: Path, expected: int) -> str:
    """Start `celery beat` with the DatabaseScheduler, wait until the row's `enabled` is `expected`, stop it."""
    log = home / "beat.log"
    cmd = [sys.executable, "-m", "celery", "-A", module, "beat", "-l", "info", "-s", str(home / "beat-schedule")]
    with log.open("wb") as out:
        beat = subprocess.Popen(cmd, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while liveness_row(db) != expected:
            assert beat.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        beat.terminate()
        try:
            beat.wait(20)
        except subprocess.TimeoutExpired:  # seen once in CI: say where it was stuck
            beat.send_signal(signal.SIGUSR1)
            time.sleep(1)
            beat.kill()
            beat.wait(10)
            pytest.fail(f"beat did not exit within 20 s of SIGTERM; its log and stacks:\n{log.read_text()[-6000:]}")
    return log.read_text()


def test_turning_beat_liveness_off_disables_its_database_row_at_beat_start(
    tmp_path: Path, clean_env: dict[str, str], unique_name: str
) -> None:
    """Liveness on: beat writes an enabled row; off: the next beat start disables it; on again: enabled again."""
    pytest.importorskip("django_celery_beat")
    db = tmp_path / "db.sqlite3"
    write_django_settings(tmp_path, "hb_db_settings", db)
    module = f"hb_db_{unique_name}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(APP.format(name=unique_name)))
    env = dict(clean_env, PYTHONPATH=f"{tmp_path}:{clean_env['PYTHONPATH']}", DJANGO_SETTINGS_MODULE="hb_db_settings")
    subprocess.run([sys.executable, "-c", MIGRATE], cwd=tmp_path, env=env, check=True, timeout=60)
    on = dict(env, HB_BEAT_URL="https://hc-ping.com/6e1fbf8f-cd5c-4a9c-8f2e-0123456789ab")

    run_beat_until(tmp_path, on, module, db, expected=1)
    off_log = run_beat_until(tmp_path, env, module, db, expected=0)
    run_beat_until(tmp_path, on, module, db, expected=1)

    assert f"beat liveness is off: disabled django-celery-beat's '{ENTRY_NAME}' periodic task" in off_log


def test_a_worker_without_beat_liveness_says_how_to_stop_the_leftover_entry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's error names the entry and what to do when liveness was turned off on purpose."""
    app = Celery("no-liveness", broker="memory://", set_as_current=False)
    handle = celery_heartbeat.install(app)
    try:
        with caplog.at_level(logging.ERROR, logger="celery_heartbeat"):
            app.tasks[BEAT_TASK].apply()
    finally:
        handle.uninstall()

    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert "If you turned it off, beat still has the 'celery-heartbeat-beat-liveness' entry" in message
    assert "with django-celery-beat, restart beat once (it then disables that periodic task)" in message
