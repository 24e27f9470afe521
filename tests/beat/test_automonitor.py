"""Beat entries monitored with no URL per task: slugs, entry matching, and pings from a real worker."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler
from celery.contrib.testing.worker import start_worker
from celery.schedules import crontab

import celery_heartbeat
from celery_heartbeat import ConfigurationError, Heartbeat
from celery_heartbeat._heartbeat import installed
from celery_heartbeat._state import settings_of
from celery_heartbeat.beat.automonitor import arg_key, marker_for, plan_entries, slug_for
from celery_heartbeat.beat.entries import read_entries
from celery_heartbeat.testing import PingReceiver

PING_KEY = "pk-0123456789abcdef"


def test_slugs_are_stable_valid_and_distinct() -> None:
    """An entry name that is a slug is kept; others get a slugified name plus a hash, never colliding."""
    assert "nightly-report" == slug_for("nightly-report")
    pretty = slug_for("Nightly report")
    assert pretty.startswith("nightly-report-") and 21 == len(pretty)
    assert pretty == slug_for("Nightly report")
    assert pretty != slug_for("nightly report")
    assert "prod-cleanup" == slug_for("cleanup", "prod-")
    long = slug_for("A" * 300, "prod-")
    assert len(long) <= 100 and long.startswith("prod-aaaa")


def test_arguments_match_across_the_broker() -> None:
    """A tuple sent by beat equals the list a worker receives; keyword order does not matter."""
    assert arg_key((1, (2, 3)), {"a": 1, "b": 2}) == arg_key([1, [2, 3]], {"b": 2, "a": 1})
    assert arg_key((1,), {}) != arg_key((2,), {})
    assert arg_key(None, None) == arg_key((), {})


def _planned(app: Celery, **conf: Any) -> dict[str, Any]:
    for key, value in conf.items():
        setattr(app.conf, key, value)
    settings = settings_of(app)
    explicit = {"proj.mapped": object()}
    planned = plan_entries(app, settings, lambda name: explicit.get(name), read_entries(app))  # type: ignore[arg-type,return-value]
    return {p.entry.name: p for p in planned}


def test_plan_explicit_opt_out_ambiguous_and_shared_slug(unique_name: str) -> None:
    """Explicit mappings win, opt-outs are honoured, indistinguishable entries and shared slugs are refused."""
    app = Celery(unique_name, set_as_current=False)
    app.conf.beat_schedule = {
        "mapped": {"task": "proj.mapped", "schedule": 60},
        "quiet": {"task": "proj.quiet", "schedule": 60},
        "a1": {"task": "proj.same", "schedule": 60, "args": (1,)},
        "a2": {"task": "proj.same", "schedule": crontab(), "args": [1]},
        "b": {"task": "proj.b", "schedule": 60},
        "c": {"task": "proj.c", "schedule": 60},
        "ok": {"task": "proj.ok", "schedule": 60, "kwargs": {"x": 1}},
        "celery-heartbeat-beat-liveness": {"task": "celery_heartbeat.beat_liveness", "schedule": 60},
    }
    plan = _planned(
        app,
        heartbeat_healthchecks_ping_key=PING_KEY,
        heartbeat_beat_entries={"quiet": False, "b": {"slug": "shared"}, "c": {"slug": "shared"}},
    )
    assert "celery-heartbeat-beat-liveness" not in plan
    assert "explicitly mapped" == plan["mapped"].reason
    assert "opted out in heartbeat_beat_entries" == plan["quiet"].reason
    assert plan["a1"].monitor is None and plan["a2"].monitor is None and plan["a1"].problem
    assert "'a1', 'a2' send the same task with the same arguments" in (plan["a1"].reason or "")
    assert "have the same slug 'shared'" in (plan["b"].reason or "")
    ok = plan["ok"].monitor
    assert ok is not None
    assert (f"https://hc-ping.com/{PING_KEY}/ok", "healthchecks") == (ok.url, ok.provider)


def test_cronitor_entries_ping_the_telemetry_url(unique_name: str) -> None:
    """With only a Cronitor key, an entry pings cronitor.link/p/<key>/<monitor key>."""
    app = Celery(unique_name, set_as_current=False)
    app.conf.beat_schedule = {"nightly": {"task": "proj.n", "schedule": crontab(minute=0, hour=1)}}
    plan = _planned(app, heartbeat_cronitor_api_key="ck-0123456789")
    monitor = plan["nightly"].monitor
    assert monitor is not None
    assert ("https://cronitor.link/p/ck-0123456789/nightly", "cronitor") == (monitor.url, monitor.provider)
    assert f"celery-heartbeat:{unique_name}" == marker_for(app, settings_of(app))


def test_without_provider_keys_nothing_is_auto_monitored(unique_name: str) -> None:
    """No keys, no auto monitors: entries say why."""
    app = Celery(unique_name, set_as_current=False)
    app.conf.beat_schedule = {"n": {"task": "proj.n", "schedule": 60}}
    assert "no provider ping key configured" == _planned(app)["n"].reason


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"healthchecks_ping_key": "has space-0123456789"}, "heartbeat_healthchecks_ping_key"),
        ({"healthchecks_api_url": "ftp://x"}, "heartbeat_healthchecks_api_url"),
        ({"beat_entries": {"x": {"grace": -1}}}, "heartbeat_beat_entries['x']['grace']"),
        ({"beat_entries": {"x": {"slug": "Not A Slug"}}}, "heartbeat_beat_entries['x']['slug']"),
        ({"beat_entries": {"x": {"timeout": 5}}}, "heartbeat_beat_entries['x']"),
        ({"grace": 0}, "heartbeat_grace"),
        ({"monitor_prefix": "Prod "}, "heartbeat_monitor_prefix"),
        (
            {"healthchecks_ping_key": "hc-0123456789", "cronitor_api_key": "cr-secret-0123456789"},
            "heartbeat_cronitor_api_key",
        ),
    ],
)
def test_invalid_settings_name_the_key_and_never_show_a_secret(
    settings: dict[str, Any], key: str, unique_name: str
) -> None:
    """Each bad value raises ConfigurationError naming its key; credentials appear cut to 4 characters."""
    app = Celery(unique_name, set_as_current=False)
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(app, **settings)
    assert key == info.value.key
    assert "0123456789" not in str(info.value)
    assert installed(app) is None


def test_settings_repr_hides_credentials(unique_name: str) -> None:
    """The settings object, if ever logged, shows no key."""
    app = Celery(unique_name, set_as_current=False)
    app.conf.heartbeat_healthchecks_ping_key = PING_KEY
    app.conf.heartbeat_healthchecks_api_key = "api-key-0123456789"
    text = repr(settings_of(app))
    assert PING_KEY not in text and "api-key-0123456789" not in text


# -- through a real worker ---------------------------------------------------------------------


@dataclass
class Beat:
    app: Celery
    rx: PingReceiver

    def send(self, name: str) -> Any:
        """Send one `beat_schedule` entry the way beat does (celery.beat.Scheduler.apply_async), wait for it."""
        spec = self.app.conf.beat_schedule[name]
        entry = ScheduleEntry(
            name=name,
            task=spec["task"],
            schedule=spec["schedule"],
            args=spec.get("args", ()),
            kwargs=spec.get("kwargs", {}),
            options=spec.get("options", {}),
            app=self.app,
        )
        scheduler = Scheduler(app=self.app, lazy=True)
        try:
            result = scheduler.apply_async(entry, advance=False)
            return result.get(timeout=15, interval=0.01, propagate=False)
        finally:
            scheduler.close()


SCHEDULE: dict[str, Any] = {
    "add-small": {"task": "am.add", "schedule": timedelta(minutes=5), "args": (1, 2)},
    "add-big": {"task": "am.add", "schedule": timedelta(hours=1), "args": (10, 20)},
    "Nightly report": {"task": "am.report", "schedule": crontab(minute=0, hour=3), "kwargs": {"fmt": "pdf"}},
    "mapped": {"task": "am.mapped", "schedule": crontab(minute=0)},
    "boom": {"task": "am.boom", "schedule": timedelta(minutes=10), "options": {"expires": 60}},
}


@pytest.fixture(scope="module")
def module_beat() -> Iterator[Beat]:
    with PingReceiver() as rx:
        app = Celery("automonitor_story", broker="memory://", backend="cache+memory://", set_as_current=False)
        app.conf.broker_transport_options = {"polling_interval": 0.01}
        app.conf.task_default_queue = "automonitor_story"  # the memory broker is shared by the whole process
        app.conf.beat_schedule = SCHEDULE

        @app.task(name="am.add")
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="am.report")
        def report(fmt: str) -> str:
            return fmt

        @app.task(name="am.mapped")
        def mapped() -> None: ...

        @app.task(name="am.boom")
        def boom() -> None:
            raise RuntimeError("boom")

        with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=15):
            yield Beat(app, rx)


@pytest.fixture
def beat(module_beat: Beat) -> Iterator[Beat]:
    module_beat.rx.clear()
    yield module_beat
    handle = installed(module_beat.app)
    if handle is not None:
        handle.uninstall()


def install(beat: Beat, **settings: Any) -> Heartbeat:
    """Only a ping key and a self-hosted ping endpoint (the receiver): no URL per task."""
    settings.setdefault("coalesce_seconds", 0)
    return celery_heartbeat.install(
        beat.app, healthchecks_ping_key=PING_KEY, healthchecks_ping_url=beat.rx.base_url, **settings
    )


def paths(beat: Beat) -> list[str]:
    return [f"{p.method} {p.path}" for p in beat.rx.pings]


def test_beat_entries_ping_their_slug_url_and_same_task_entries_are_two_monitors(beat: Beat) -> None:
    """Each entry's run pings <ping-url>/<ping-key>/<slug>; two entries of one task with other args ping apart."""
    hb = install(beat)
    assert 3 == beat.send("add-small")
    assert hb.flush(10)
    assert 30 == beat.send("add-big")
    assert hb.flush(10)
    assert "pdf" == beat.send("Nightly report")
    assert hb.flush(10)
    report = slug_for("Nightly report")
    assert [f"GET /{PING_KEY}/add-small", f"GET /{PING_KEY}/add-big", f"GET /{PING_KEY}/{report}"] == paths(beat)


def test_a_run_with_other_arguments_is_not_a_beat_run(beat: Beat) -> None:
    """The same task called by hand with arguments no entry has pings nothing."""
    hb = install(beat)
    assert 10 == beat.app.tasks["am.add"].delay(5, 5).get(timeout=15, interval=0.01)
    assert hb.flush(10)
    assert [] == paths(beat)


def test_explicit_mapping_wins_over_auto_monitoring(beat: Beat) -> None:
    """An entry whose task is in heartbeat_urls pings that URL, not a slug URL."""
    hb = install(beat, urls={"am.mapped": beat.rx.url("explicit")})
    beat.send("mapped")
    assert hb.flush(10)
    assert ["GET /explicit"] == paths(beat)


def test_failure_and_start_pings_use_the_entry_monitor(beat: Beat) -> None:
    """A failing entry run sends /start then /fail on its slug URL, with the task id as run id."""
    hb = install(beat, send_start=True)
    beat.send("boom")
    assert hb.flush(10)
    pings = beat.rx.pings
    assert [f"/{PING_KEY}/boom/start", f"/{PING_KEY}/boom/fail"] == [p.path for p in pings]
    assert pings[0].query["rid"] == pings[1].query["rid"]
    assert b"RuntimeError" == pings[1].body


def test_opted_out_entry_sends_nothing(beat: Beat) -> None:
    """heartbeat_beat_entries={'add-small': False} silences that entry and keeps the others."""
    hb = install(beat, beat_entries={"add-small": False})
    beat.send("add-small")
    beat.send("add-big")
    assert hb.flush(10)
    assert [f"GET /{PING_KEY}/add-big"] == paths(beat)


def test_worker_ready_reports_entries_it_cannot_monitor(unique_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Warming the table (done at worker_ready) logs entries a worker cannot tell apart, once."""
    app = Celery(unique_name, set_as_current=False)
    app.conf.beat_schedule = {
        "morning": {"task": "proj.digest", "schedule": crontab(minute=0, hour=8)},
        "evening": {"task": "proj.digest", "schedule": crontab(minute=0, hour=20)},
    }
    hb = celery_heartbeat.install(app, healthchecks_ping_key=PING_KEY)
    try:
        with caplog.at_level(logging.INFO, logger="celery_heartbeat"):
            hb._wiring.auto.warm()
            hb._wiring.auto.warm()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert 2 == len(warnings)  # one per entry, not repeated by the second warm-up
        assert "beat entry 'morning' is not monitored" in warnings[0]
        assert hb._wiring.monitor_for_run("proj.digest", [], {}) is None
    finally:
        hb.uninstall()


def test_lookup_reads_no_schedule_after_the_first_build(unique_name: str) -> None:
    """A static schedule is read once per process: later runs resolve from the table, not from the config."""
    app = Celery(unique_name, set_as_current=False)
    app.conf.beat_schedule = {f"e{i}": {"task": f"proj.t{i}", "schedule": 60, "args": (i,)} for i in range(200)}
    hb = celery_heartbeat.install(app, healthchecks_ping_key=PING_KEY)
    try:
        first = hb._wiring.monitor_for_run("proj.t7", [7], {})
        assert first is not None
        app.conf.beat_schedule = {}
        assert first == hb._wiring.monitor_for_run("proj.t7", [7], {})
        assert None is hb._wiring.monitor_for_run("proj.other", [1], {})
    finally:
        hb.uninstall()


def test_a_due_refresh_runs_off_the_task_thread_and_runs_keep_the_old_table(unique_name: str) -> None:
    """When a dynamic schedule's table expires, the lookup answers from the old table at once and the
    re-read happens on a background thread, never on the task's thread."""
    app = Celery(unique_name, set_as_current=False)
    app.conf.beat_schedule = {"old": {"task": "proj.t", "schedule": 60, "args": (1,)}}
    hb = celery_heartbeat.install(app, healthchecks_ping_key=PING_KEY)
    auto = hb._wiring.auto
    builders: list[str] = []
    build = auto.build

    def recording_build() -> Any:
        builders.append(threading.current_thread().name)
        return build()

    try:
        auto.build = recording_build  # type: ignore[method-assign]
        before = hb._wiring.monitor_for_run("proj.t", [1], {})  # first use in this process: built here, once
        assert before is not None and before.url.endswith("/old")
        app.conf.beat_schedule = {"new": {"task": "proj.t", "schedule": 60, "args": (1,)}}
        auto._expires = time.monotonic() - 1  # as a django-celery-beat table is after REFRESH_SECONDS
        assert before == hb._wiring.monitor_for_run("proj.t", [1], {})  # the old table, without waiting
        deadline = time.monotonic() + 5
        while not (hb._wiring.monitor_for_run("proj.t", [1], {}) or before).url.endswith("/new"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert [threading.current_thread().name, "celery-heartbeat-entries"] == builders
    finally:
        hb.uninstall()


BEAT_APP = """
import celery_heartbeat
from celery import Celery

app = Celery({name!r}, broker={broker!r})
app.conf.task_default_queue = {name!r}
app.conf.broker_connection_retry_on_startup = True
app.conf.beat_schedule = {{
    "add-small": {{"task": "proj.add", "schedule": 1.0, "args": (1, 2)}},
    "add-big": {{"task": "proj.add", "schedule": 1.0, "args": (10, 20), "options": {{"expires": 5}}}},
    "Nightly boom": {{"task": "proj.boom", "schedule": 1.0}},
}}
app.conf.heartbeat_healthchecks_ping_key = {ping_key!r}
app.conf.heartbeat_healthchecks_ping_url = {ping_url!r}
app.conf.heartbeat_coalesce_seconds = 0
celery_heartbeat.install(app)


@app.task(name="proj.add")
def add(x, y):
    return x + y


@app.task(name="proj.boom")
def boom():
    raise ValueError("nope")
"""


@pytest.mark.slow
def test_real_beat_and_prefork_worker_ping_each_entrys_slug(
    redis_url: str, unique_name: str, tmp_path: Any, clean_env: dict[str, str]
) -> None:
    """`celery beat` sends the entries and prefork children (which build the entry table lazily) ping each slug."""
    import subprocess
    import sys

    with PingReceiver() as rx:
        module = BEAT_APP.format(name=unique_name, broker=redis_url, ping_key=PING_KEY, ping_url=rx.base_url)
        (tmp_path / "beatapp.py").write_text(module)
        env = dict(clean_env, PYTHONPATH=f"{tmp_path}:{clean_env['PYTHONPATH']}")
        base = [sys.executable, "-m", "celery", "-A", "beatapp"]
        worker_cmd = [*base, "worker", "-P", "prefork", "-c", "2", "-Q", unique_name, "--without-gossip"]
        worker_cmd += ["--without-mingle", "--without-heartbeat", "-l", "INFO"]
        beat_cmd = [*base, "beat", "-s", str(tmp_path / "schedule"), "--max-interval", "1", "-l", "INFO"]
        procs = []
        try:
            with open(tmp_path / "worker.log", "wb") as wlog, open(tmp_path / "beat.log", "wb") as blog:
                for cmd, log in ((worker_cmd, wlog), (beat_cmd, blog)):
                    procs.append(
                        subprocess.Popen(
                            cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                        )
                    )
            boom = slug_for("Nightly boom")
            wanted = {f"/{PING_KEY}/add-small", f"/{PING_KEY}/add-big", f"/{PING_KEY}/{boom}/fail"}
            try:
                rx.wait_for(predicate=lambda p: p.path == f"/{PING_KEY}/add-small", timeout=45)
                rx.wait_for(predicate=lambda p: p.path == f"/{PING_KEY}/add-big", timeout=20)
                rx.wait_for(predicate=lambda p: p.path == f"/{PING_KEY}/{boom}/fail", timeout=20)
            except AssertionError:
                logs = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
                raise AssertionError(logs + (tmp_path / "beat.log").read_text(errors="replace")[-2000:]) from None
            seen = {p.path for p in rx.pings}
            assert seen <= wanted, seen - wanted
            assert "monitored automatically" in (tmp_path / "worker.log").read_text(errors="replace")
        finally:
            for proc in procs:  # the whole session: prefork children too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
