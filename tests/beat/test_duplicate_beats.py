"""Duplicate beats on real brokers: real `celery beat` and `celery worker` subprocesses, beat liveness every 1 s.

Two beats on one schedule make the beat monitor receive a failure ping naming both within
3 periods; when one stops, success pings resume within 3 periods; a restart and a RedBeat
lock hand-over never alarm. Default scheduler, django-celery-beat and RedBeat; Redis and RabbitMQ.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from support import write_django_settings
from worker_process import celery_worker

from celery_heartbeat.beat.announcer import EXCHANGE_PREFIX
from celery_heartbeat.testing import Ping, PingReceiver

pytestmark = pytest.mark.slow

EVERY = 1.0
LIVENESS_SENT = b"Sending due task celery-heartbeat-beat-liveness"

APP_MODULE = """
{prelude}
from celery import Celery
import celery_heartbeat

app = Celery("{name}", broker="{broker}")
app.conf.task_default_queue = "{name}"
app.conf.control_exchange = "{name}"
app.conf.broker_connection_retry_on_startup = True
app.conf.beat_max_loop_interval = 1
{conf}
celery_heartbeat.install(app)
celery_heartbeat.install_beat_liveness(app, {{"url": "{url}", "provider": "healthchecks"}}, every={every})
"""


class Rig:
    """One app module, its worker and its beats, all logging into `home`."""

    def __init__(self, home: Path, env: dict[str, str], name: str, beat_args: tuple[str, ...] = ()) -> None:
        self.home = home
        self.env = dict(env, PYTHONPATH=os.pathsep.join([str(home), env.get("PYTHONPATH", "")]))
        self.module = f"dupapp_{name}"
        self.beat_args = beat_args
        self.beats: list[tuple[subprocess.Popen[bytes], Path]] = []

    def write(self, name: str, broker: str, url: str, *, prelude: str = "", conf: str = "") -> None:
        source = APP_MODULE.format(prelude=prelude, name=name, broker=broker, conf=conf, url=url, every=EVERY)
        (self.home / f"{self.module}.py").write_text(textwrap.dedent(source))

    @contextmanager
    def worker(self) -> Iterator[None]:
        with celery_worker(self.module, self.home, self.env, "-P", "solo"):
            yield

    def start_beat(self, schedule: str) -> subprocess.Popen[bytes]:
        log = self.home / f"beat{len(self.beats)}.log"
        cmd = [sys.executable, "-m", "celery", "-A", self.module, "beat", "-l", "info"]
        cmd += ["-s", str(self.home / schedule), *self.beat_args]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=self.home, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.beats.append((proc, log))
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> Path:
        return next(log for p, log in self.beats if p is proc)

    def wait_in_log(self, proc: subprocess.Popen[bytes], text: bytes, timeout: float = 45.0) -> None:
        log = self.log_of(proc)
        deadline = time.monotonic() + timeout
        while text not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

    def beat_logs(self) -> str:
        return "\n".join(log.read_text() for _, log in self.beats)

    def stop_all(self) -> None:
        for proc, _ in self.beats:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def label(proc: subprocess.Popen[bytes]) -> str:
    return f"{socket.gethostname()} (pid {proc.pid})"


def is_failure(ping: Ping) -> bool:
    return ping.path.endswith("/fail")


def after(rx: PingReceiver, start: int) -> list[Ping]:
    return rx.pings_for("beat")[start:]


def wait_for_more(rx: PingReceiver, start: int, count: int, timeout: float = 45.0) -> list[Ping]:
    """The `count` liveness pings that arrive after the first `start` ones (a barrier, not a clock)."""
    rx.wait_for(start + count, name="beat", timeout=timeout)
    return after(rx, start)[:count]


@contextmanager
def cleanup(broker: str, name: str, *patterns: str) -> Iterator[None]:
    """Afterwards: delete this test's own queue, and on Redis its own keys (never anything shared)."""
    try:
        yield
    finally:
        from celery import Celery

        app = Celery("cleanup", broker=broker, set_as_current=False)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(name)
            if broker.startswith("redis://"):
                client = conn.default_channel.client
                for pattern in patterns:
                    for key in client.scan_iter(match=pattern):
                        client.delete(key)


def bindings(name: str) -> str:
    """Where kombu's Redis transport keeps the fanout exchange's bindings (a scan pattern: kombu 5.7 keeps two)."""
    return f"_kombu.binding*.{EXCHANGE_PREFIX}{name}.{name}"


def redis_keys(broker: str, pattern: str) -> list[bytes]:
    from celery import Celery

    app = Celery("probe", broker=broker, set_as_current=False)
    with app.connection_for_write() as conn:
        return list(conn.default_channel.client.scan_iter(match=pattern))


def test_two_beats_alarm_naming_both_and_success_resumes_when_one_stops(
    real_broker_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Second beat: a failure ping naming both within 3 periods, ERRORs in worker and beats; its stop: successes."""
    rig = Rig(tmp_path, clean_env, unique_name)
    with PingReceiver() as rx, ExitStack() as stack:
        stack.enter_context(cleanup(real_broker_url, unique_name, bindings(unique_name)))
        rig.write(unique_name, real_broker_url, rx.url("beat"))
        stack.enter_context(rig.worker())
        stack.callback(rig.stop_all)
        first = rig.start_beat("schedule-a")
        assert not any(map(is_failure, wait_for_more(rx, 0, 3)))
        second = rig.start_beat("schedule-b")
        rig.wait_in_log(second, LIVENESS_SENT)
        since_second = len(rx.pings_for("beat"))
        # 3 periods of two beats are at most 6 liveness pings: the failure must be among them.
        window = wait_for_more(rx, since_second, 6)
        failures = [p for p in window if is_failure(p)]
        assert failures, [p.target for p in window]
        body = failures[0].body.decode()
        assert body.startswith("2 celery beats are dispatching the same schedule: "), body
        assert label(first) in body and label(second) in body, body
        # After the first failure, the other beat may have one message out that it sent before it heard
        # (a success); from then on every ping is a failure while both run: nothing flips the monitor green.
        steady = wait_for_more(rx, since_second + window.index(failures[0]) + 1, 5)
        assert all(is_failure(p) for p in steady[1:]), [p.target for p in steady]
        assert "every periodic task is sent more than once" in (tmp_path / "worker.log").read_text()
        beat_logs = rig.beat_logs()
        assert "duplicate celery beat:" in beat_logs and "ERROR" in beat_logs, beat_logs
        stop(second)
        since_stop = len(rx.pings_for("beat"))
        # 3 periods of the survivor, plus one message the stopped beat may have had in flight.
        resumed = wait_for_more(rx, since_stop, 4)
        first_success = next((i for i, p in enumerate(resumed) if not is_failure(p)), None)
        assert first_success is not None, [p.target for p in resumed]
        later = wait_for_more(rx, since_stop + first_success, 3)
        assert not any(map(is_failure, later)), [p.target for p in later]
        assert "no longer dispatches this schedule" in rig.log_of(first).read_text()
        rig.stop_all()
        if real_broker_url.startswith("redis://"):
            assert [] == redis_keys(real_broker_url, bindings(unique_name))  # both beats cleaned up


def test_a_restart_never_alarms(
    real_broker_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Stop a beat and start it again at once (same schedule file): only success pings, no duplicate ERROR."""
    rig = Rig(tmp_path, clean_env, unique_name)
    with PingReceiver() as rx, ExitStack() as stack:
        stack.enter_context(cleanup(real_broker_url, unique_name, bindings(unique_name)))
        rig.write(unique_name, real_broker_url, rx.url("beat"))
        stack.enter_context(rig.worker())
        stack.callback(rig.stop_all)
        old = rig.start_beat("schedule")
        wait_for_more(rx, 0, 3)
        stop(old)
        new = rig.start_beat("schedule")
        rig.wait_in_log(new, LIVENESS_SENT)
        wait_for_more(rx, len(rx.pings_for("beat")), 6)
        assert [] == [p.target for p in rx.pings_for("beat") if is_failure(p)]
        assert "duplicate" not in rig.beat_logs().replace("duplicate-beat detection on", "")
        assert "dispatching the same schedule" not in (tmp_path / "worker.log").read_text()


DJANGO_PRELUDE = """
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings_{name}")
import django
django.setup()
"""


def test_database_scheduler_two_beats_alarm(
    rabbitmq_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """django-celery-beat's DatabaseScheduler (one sqlite file, two beats): failure ping naming both."""
    pytest.importorskip("django_celery_beat")
    write_django_settings(tmp_path, f"djsettings_{unique_name}", tmp_path / "db.sqlite3")
    rig = Rig(tmp_path, clean_env, unique_name, ("-S", "django_celery_beat.schedulers:DatabaseScheduler"))
    migrate = "import django; django.setup(); from django.core.management import call_command; call_command('migrate')"
    env = dict(rig.env, DJANGO_SETTINGS_MODULE=f"djsettings_{unique_name}")
    subprocess.run([sys.executable, "-c", migrate], cwd=tmp_path, env=env, check=True, capture_output=True)
    with PingReceiver() as rx, ExitStack() as stack:
        stack.enter_context(cleanup(rabbitmq_url, unique_name))
        rig.write(unique_name, rabbitmq_url, rx.url("beat"), prelude=DJANGO_PRELUDE.format(name=unique_name))
        stack.enter_context(rig.worker())
        stack.callback(rig.stop_all)
        first = rig.start_beat("unused-a")
        assert not any(map(is_failure, wait_for_more(rx, 0, 3)))
        second = rig.start_beat("unused-b")
        rig.wait_in_log(second, LIVENESS_SENT)
        window = wait_for_more(rx, len(rx.pings_for("beat")), 6)
        failures = [p for p in window if is_failure(p)]
        assert failures, [p.target for p in window]
        assert label(first) in failures[0].body.decode() and label(second) in failures[0].body.decode()


REDBEAT_CONF = """
app.conf.redbeat_redis_url = "{broker}"
app.conf.redbeat_key_prefix = "{name}:redbeat"
app.conf.redbeat_lock_timeout = 3
"""


def test_redbeat_lock_hand_overs_never_alarm(
    redis_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """RedBeat: a standby hears the lock holder, takes over after a stop (lock released) or a kill: no alarm."""
    pytest.importorskip("redbeat")
    rig = Rig(tmp_path, clean_env, unique_name, ("-S", "redbeat.RedBeatScheduler"))
    with PingReceiver() as rx, ExitStack() as stack:
        stack.enter_context(cleanup(redis_url, unique_name, f"{unique_name}:redbeat*", bindings(unique_name)))
        rig.write(unique_name, redis_url, rx.url("beat"), conf=REDBEAT_CONF.format(broker=redis_url, name=unique_name))
        stack.enter_context(rig.worker())
        stack.callback(rig.stop_all)
        holder = rig.start_beat("unused-a")
        rig.wait_in_log(holder, b"Acquired lock")
        wait_for_more(rx, 0, 2)
        for how in (signal.SIGTERM, signal.SIGKILL):  # SIGTERM releases the lock; SIGKILL leaves it to expire
            standby = rig.start_beat(f"unused-{how}")
            # The standby listens while it waits for the lock: it hears the holder dispatch.
            rig.wait_in_log(standby, f"heard beat {label(holder)}".encode())
            assert b"Acquired lock" not in rig.log_of(standby).read_bytes()
            stop(holder, how)
            rig.wait_in_log(standby, b"Acquired lock")
            rig.wait_in_log(standby, LIVENESS_SENT)
            wait_for_more(rx, len(rx.pings_for("beat")), 4)
            holder = standby
        assert [] == [p.target for p in rx.pings_for("beat") if is_failure(p)]
        assert "duplicate celery beat" not in rig.beat_logs()


def test_two_redbeats_without_a_lock_alarm(
    redis_url: str, unique_name: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """RedBeat with its lock off (or a lock that failed): both dispatch, and the failure ping names both."""
    pytest.importorskip("redbeat")
    rig = Rig(tmp_path, clean_env, unique_name, ("-S", "redbeat.RedBeatScheduler"))
    conf = REDBEAT_CONF.format(broker=redis_url, name=unique_name) + "app.conf.redbeat_lock_key = None\n"
    with PingReceiver() as rx, ExitStack() as stack:
        stack.enter_context(cleanup(redis_url, unique_name, f"{unique_name}:redbeat*", bindings(unique_name)))
        rig.write(unique_name, redis_url, rx.url("beat"), conf=conf)
        stack.enter_context(rig.worker())
        stack.callback(rig.stop_all)
        first = rig.start_beat("unused-a")
        wait_for_more(rx, 0, 2)
        second = rig.start_beat("unused-b")
        rig.wait_in_log(second, LIVENESS_SENT)
        window = wait_for_more(rx, len(rx.pings_for("beat")), 6)
        failures = [p for p in window if is_failure(p)]
        assert failures, [p.target for p in window]
        assert label(first) in failures[0].body.decode() and label(second) in failures[0].body.decode()
