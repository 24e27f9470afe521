"""Beat liveness: beat -> broker -> worker -> monitor, every period, and silence soon after beat dies."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery, signals
from celery.beat import Service
from celery.contrib.testing.worker import start_worker
from support import write_django_settings
from worker_process import WorkerProcess, spawn_worker

import celery_heartbeat
from celery_heartbeat import ConfigurationError, install_beat_liveness
from celery_heartbeat._heartbeat import installed
from celery_heartbeat._state import peek
from celery_heartbeat._tasks import BEAT_TASK
from celery_heartbeat.beat.liveness import ENTRY_NAME
from celery_heartbeat.testing import PingReceiver


def test_liveness_entry_expires_after_one_period_and_carries_no_url(make_app: Callable[..., Celery]) -> None:
    """The beat entry runs the library's task every period, expires after one, and holds no URL."""
    app = make_app()
    install_beat_liveness(app, "https://hc-ping.com/5ecret-beat-uuid", every=30, queue="beats")
    entry = app.conf.beat_schedule[ENTRY_NAME]
    assert BEAT_TASK == entry["task"]
    assert dt.timedelta(seconds=30) == entry["schedule"]
    assert {"expires": 30.0, "queue": "beats"} == entry["options"]
    assert "5ecret" not in repr(app.conf.beat_schedule)
    assert ENTRY_NAME not in (make_app().conf.beat_schedule or {})  # another app's schedule is untouched


def test_beat_url_setting_installs_the_entry_and_disabled_installs_none(make_app: Callable[..., Celery]) -> None:
    """`heartbeat_beat_url` / `heartbeat_beat_every` add the entry; with heartbeat_enabled=False nothing is added."""
    app = make_app(heartbeat_beat_url="https://hc-ping.com/abc-beat", heartbeat_beat_every=5)
    celery_heartbeat.install(app)
    assert dt.timedelta(seconds=5) == app.conf.beat_schedule[ENTRY_NAME]["schedule"]
    off = make_app(heartbeat_beat_url="https://hc-ping.com/abc-beat", heartbeat_enabled=False)
    celery_heartbeat.install(off)
    assert BEAT_TASK in off.tasks
    assert ENTRY_NAME not in (off.conf.beat_schedule or {})


def test_install_beat_liveness_validates_its_arguments(make_app: Callable[..., Celery]) -> None:
    """A bad URL or a period that is not a positive number raises ConfigurationError naming it."""
    app = make_app()
    for every in (0, -1, "soon", True, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError) as info:
            install_beat_liveness(app, "https://hc-ping.com/abc", every=every)  # type: ignore[arg-type]
        assert "every" == info.value.key
    with pytest.raises(ConfigurationError) as info:
        install_beat_liveness(app, "ftp://hc-ping.com/abc")
    assert "heartbeat_beat_url" == info.value.key
    install_beat_liveness(app, "")  # an unset environment variable: disabled, quietly
    assert ENTRY_NAME not in (app.conf.beat_schedule or {})


def test_install_beat_liveness_accepts_a_heartbeat_urls_name(make_app: Callable[..., Celery]) -> None:
    """A name from heartbeat_urls works as the URL (as for the canvas helpers); an unknown name is an error."""
    app = make_app(heartbeat_urls={"beat-alive": "https://hc-ping.com/beat-uuid"})
    install_beat_liveness(app, "beat-alive")
    assert dt.timedelta(seconds=60) == app.conf.beat_schedule[ENTRY_NAME]["schedule"]  # the default period
    with pytest.raises(ConfigurationError) as info:
        install_beat_liveness(make_app(), "no-such-monitor")
    assert ("heartbeat_beat_url", "no-such-monitor") == (info.value.key, info.value.value)


def test_entry_survives_a_later_beat_schedule_reassignment(make_app: Callable[..., Celery], tmp_path: Path) -> None:
    """A later `app.conf.beat_schedule = {...}` drops the entry from the config, and beat_init puts it back."""
    app = make_app()
    install_beat_liveness(app, "https://hc-ping.com/abc-beat", every=7)
    app.conf.beat_schedule = {"report": {"task": "proj.report", "schedule": 60.0}}
    service = Service(app, schedule_filename=str(tmp_path / "schedule"))
    try:
        assert ["report"] == sorted(k for k in service.scheduler.schedule if not k.startswith("celery."))
        signals.beat_init.send(sender=service)
        entry = service.scheduler.schedule[ENTRY_NAME]
        assert (BEAT_TASK, 7.0) == (entry.task, entry.options["expires"])
        assert {"report", ENTRY_NAME} == set(app.conf.beat_schedule)
    finally:
        state = peek(app)
        if state is not None and state.beat_watch is not None:  # duplicate-beat detection started with it
            state.beat_watch.stop()  # type: ignore[attr-defined]
        service.scheduler.close()


def test_an_expired_liveness_message_sends_nothing_not_even_a_failure_ping(make_app: Callable[..., Celery]) -> None:
    """A backlog message that expired is revoked without a liveness ping, and is no failure for the hooks."""
    app = make_app()

    @app.task(name="proj.sentinel")
    def sentinel() -> None: ...

    with PingReceiver() as rx:
        urls = {BEAT_TASK: {"url": rx.url("hooks"), "provider": "healthchecks"}, sentinel.name: rx.url("sentinel")}
        celery_heartbeat.install(app, urls=urls)
        install_beat_liveness(app, rx.url("alive"), every=60)
        with start_worker(app, pool="solo", perform_ping_check=False):
            app.send_task(BEAT_TASK, expires=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5))
            app.send_task(BEAT_TASK)
            # Barrier: the solo worker runs its queue in order, so once the sentinel's ping is out, both are done.
            sentinel.delay()
            rx.wait_for(1, name="sentinel")
            handle = installed(app)
            assert handle is not None and handle.flush(5.0)
        assert 1 == len(rx.pings_for("alive"))
        assert ["/hooks"] == [p.path for p in rx.pings_for("hooks")]  # success of the fresh one, no /fail


APP_MODULE = """
from celery import Celery
import celery_heartbeat

app = Celery("{name}", broker="{broker}")
app.conf.task_default_queue = "{name}"
app.conf.control_exchange = "{name}"
app.conf.broker_connection_retry_on_startup = True
celery_heartbeat.install(app)
celery_heartbeat.install_beat_liveness(app, "{url}", every=1)
# Later code replaces the schedule wholesale: the liveness entry must survive it.
app.conf.beat_schedule = {{"hourly": {{"task": "{name}.noop", "schedule": 3600.0}}}}


@app.task(name="{name}.noop")
def noop():
    return None


@app.task(name="{name}.sentinel", heartbeat="{sentinel}")
def sentinel():
    return None
"""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.slow
def test_beat_and_worker_subprocesses_ping_every_period_and_stop_after_beat_dies(
    redis_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Real beat + worker with every=1: one ping a second, no burst from the backlog, silence after beat stops."""
    with PingReceiver() as rx:
        module = f"beatapp_{unique_name}"
        source = APP_MODULE.format(name=unique_name, broker=redis_url, url=rx.url("beat"), sentinel=rx.url("sentinel"))
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        env = dict(clean_env, PYTHONPATH=f"{tmp_path}:{clean_env['PYTHONPATH']}")
        beat_cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            module,
            "beat",
            "-s",
            str(tmp_path / "schedule"),
            "-l",
            "info",
        ]
        beat_log = (tmp_path / "beat.log").open("wb")
        beat: subprocess.Popen[bytes] | None = None
        worker: WorkerProcess | None = None
        try:
            # Beat first: the messages it sends while no worker runs expire instead of bursting later.
            beat = subprocess.Popen(beat_cmd, cwd=tmp_path, env=env, stdout=beat_log, stderr=subprocess.STDOUT)
            time.sleep(3.0)
            worker = spawn_worker(module, tmp_path, env, "-P", "solo")
            rx.wait_for(5, name="beat", timeout=45)
            _stop(beat)
            stopped = time.time()
            # Barrier: a sentinel through the same queue and worker, behind every message beat sent.
            sentinel = Celery(unique_name, broker=redis_url, set_as_current=False)
            sentinel.conf.task_default_queue = unique_name
            sentinel.send_task(f"{unique_name}.sentinel")
            sentinel.close()
            rx.wait_for(1, name="sentinel", timeout=30)
        finally:
            if beat is not None:
                _stop(beat)
            if worker is not None:
                worker.stop()
            beat_log.close()
            _drop_queue(redis_url, unique_name)
        times = [p.time for p in rx.pings_for("beat")]
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        assert len(times) >= 5, (tmp_path / "beat.log").read_text()
        # The first ping may come from the one backlog message still inside its expiry (sent < 1 s before the
        # worker started); every older one expired, so after it the pings keep the period: no burst.
        assert all(0.5 <= gap <= 2.0 for gap in gaps[1:]), gaps
        assert max(times) <= stopped + 2 * 1.0, (max(times) - stopped, gaps)


def _drop_queue(broker: str, queue: str) -> None:
    app = Celery("cleanup", broker=broker, set_as_current=False)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


DJANGO_BEAT = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", "django_celery_beat", verbosity=0)
from celery import Celery, signals
from celery.beat import Service
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
import celery_heartbeat

app = Celery("djbeat", broker="memory://", set_as_current=False)
app.conf.beat_scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
celery_heartbeat.install_beat_liveness(app, sys.argv[1], every=30)
app.conf.beat_schedule = {}  # replaced later: beat_init must still write the entry
service = Service(app, scheduler_cls=DatabaseScheduler)
service.scheduler
signals.beat_init.send(sender=service)
row = PeriodicTask.objects.get(name="celery-heartbeat-beat-liveness")
entry = ModelEntry(row, app=app)
print(json.dumps({
    "task": row.task,
    "every": row.interval.every,
    "period": row.interval.period,
    "expires": entry.options.get("expires"),
    "stored": [row.args, row.kwargs, row.headers],
}))
"""


@pytest.mark.slow
def test_database_scheduler_gets_the_entry_with_its_expiry_at_beat_start(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """django-celery-beat: beat_init writes the row (no URL in it), with an expiry of one period."""
    pytest.importorskip("django_celery_beat")
    db = tmp_path / "db.sqlite3"
    write_django_settings(tmp_path, "djsettings", db)
    (tmp_path / "djbeat.py").write_text(DJANGO_BEAT)
    env = dict(clean_env, PYTHONPATH=f"{tmp_path}:{clean_env['PYTHONPATH']}")
    url = "https://hc-ping.com/5ecret-db-beat"
    cmd = [sys.executable, str(tmp_path / "djbeat.py"), url]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (BEAT_TASK, 30, "seconds", 30) == (row["task"], row["every"], row["period"], row["expires"])
    assert "5ecret" not in json.dumps(row["stored"])
