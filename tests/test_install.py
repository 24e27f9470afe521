"""install(): no silent no-ops. Proxies, configuration loaded late, misspelt settings, re-installs, uninstall."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from celery.local import Proxy

import celery_heartbeat
from celery_heartbeat import ConfigurationError
from celery_heartbeat._heartbeat import installed
from celery_heartbeat._state import peek
from celery_heartbeat.beat.liveness import ENTRY_NAME
from celery_heartbeat.testing import PingReceiver

TOKEN = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"

LIBRARY_SIGNALS = [
    signals.task_prerun,
    signals.task_success,
    signals.task_failure,
    signals.task_revoked,
    signals.worker_init,
    signals.worker_ready,
    signals.worker_process_init,
    signals.worker_shutting_down,
    signals.worker_process_shutdown,
    signals.worker_shutdown,
    signals.beat_init,
    signals.beat_embedded_init,
]


def our_receivers() -> list[str]:
    """The dispatch uids of every receiver this library has connected, on every signal."""
    return [
        str(key[0])
        for signal in LIBRARY_SIGNALS
        for key, _ in signal.receivers
        if str(key[0]).startswith("celery_heartbeat")
    ]


class Lines(logging.Handler):
    """Records the library's log lines, whatever a worker does to the root logger's handlers."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def library_log() -> Iterator[Lines]:
    logger = logging.getLogger("celery_heartbeat")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def receiver() -> Iterator[PingReceiver]:
    with PingReceiver() as rx:
        yield rx


def with_task(app: Celery) -> Any:
    @app.task(name="proj.report", shared=False)
    def report() -> str:
        return "done"

    return report


def test_install_through_a_proxy_pings_like_the_app(make_app: Callable[..., Celery], receiver: PingReceiver) -> None:
    """install(Proxy(app)) wires the app behind it: a run of a mapped task pings."""
    app = make_app()
    report = with_task(app)
    hb = celery_heartbeat.install(Proxy(lambda: app), urls={"proj.report": receiver.url("report")})
    report.apply()
    assert hb.flush(10)
    assert ["/report"] == [p.path for p in receiver.wait_for(1, name="report")]
    assert hb is installed(app)
    assert isinstance(hb, celery_heartbeat.Heartbeat)  # the public handle type


def test_install_current_app_pings(make_app: Callable[..., Celery], receiver: PingReceiver) -> None:
    """install(celery.current_app) works like install(app)."""
    from celery import _state, current_app

    app = make_app()
    report = with_task(app)
    previous = _state.get_current_app()
    app.set_current()
    try:
        hb = celery_heartbeat.install(current_app, urls={"proj.report": receiver.url("report")})
        report.apply()
        assert hb.flush(10)
        assert 1 == len(receiver.wait_for(1, name="report"))
    finally:
        previous.set_current()


def test_settings_assigned_after_install_count_at_the_first_task(
    make_app: Callable[..., Celery], receiver: PingReceiver
) -> None:
    """`app.conf.heartbeat_urls = ...` after install() is read when the first task runs."""
    app = make_app()
    report = with_task(app)
    hb = celery_heartbeat.install(app, coalesce_seconds=0)
    app.conf.heartbeat_urls = {"proj.report": receiver.url("late")}
    report.apply()
    assert hb.flush(10)
    assert 1 == len(receiver.wait_for(1, name="late"))
    assert receiver.url("late") == hb.monitor_for("proj.report").url  # type: ignore[union-attr]


def test_config_from_object_after_install_counts_at_worker_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: PingReceiver, unique_name: str
) -> None:
    """install() before config_from_object(): the worker reads the configuration when it starts."""
    (tmp_path / f"{unique_name}_conf.py").write_text(
        f"heartbeat_urls = {{'proj.report': {receiver.url('configured')!r}}}\nheartbeat_coalesce_seconds = 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Celery(unique_name, broker="memory://", backend="cache+memory://", set_as_current=False)
    report = with_task(app)
    hb = celery_heartbeat.install(app)
    app.config_from_object(f"{unique_name}_conf")
    app.conf.broker_transport_options = {"polling_interval": 0.01}
    try:
        with start_worker(app, pool="threads", perform_ping_check=False):
            assert receiver.url("configured") == hb.monitor_for("proj.report").url  # type: ignore[union-attr]
            report.delay().get(timeout=10)
            assert hb.flush(10)
        assert 1 == len(receiver.wait_for(1, name="configured"))
    finally:
        hb.uninstall()


def test_invalid_setting_assigned_after_install_is_logged_at_worker_start(
    make_app: Callable[..., Celery], caplog: pytest.LogCaptureFixture
) -> None:
    """A bad value that arrives after install() is an ERROR naming the key when the configuration is read."""
    app = make_app()
    with_task(app)
    celery_heartbeat.install(app)
    app.conf.heartbeat_timeout = -1
    with caplog.at_level(logging.ERROR, logger="celery_heartbeat"):
        app.tasks["proj.report"].apply()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("heartbeat_timeout=-1" in message for message in errors), errors


@pytest.mark.parametrize(
    ("conf", "key", "suggestion"),
    [
        ({"heartbeat_url": {"proj.report": f"https://hc-ping.com/{TOKEN}"}}, "heartbeat_url", "heartbeat_urls"),
        ({"heartbeat_timout": 3}, "heartbeat_timout", "heartbeat_timeout"),
        ({"heartbeat_beaturl": f"https://hc-ping.com/{TOKEN}"}, "heartbeat_beaturl", "heartbeat_beat_url"),
    ],
)
def test_unknown_heartbeat_setting_is_an_error_naming_the_closest(
    conf: dict[str, Any], key: str, suggestion: str, make_app: Callable[..., Celery]
) -> None:
    """A misspelt heartbeat_* key raises ConfigurationError naming it and the real setting; no secret shown."""
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(make_app(**conf))
    assert key == info.value.key
    assert f"did you mean {suggestion}?" in str(info.value)
    assert TOKEN not in str(info.value)


def django_style_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> Celery:
    (tmp_path / f"{name}_settings.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Celery(name, set_as_current=False)
    app.config_from_object(f"{name}_settings", namespace="CELERY")
    return app


def test_misspelt_namespaced_setting_names_the_key_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    """Django's CELERY_HEARTBEAT_URL (no S) is an error naming CELERY_HEARTBEAT_URL and CELERY_HEARTBEAT_URLS."""
    app = django_style_app(
        tmp_path, monkeypatch, unique_name, f"CELERY_HEARTBEAT_URL = {{'t': 'https://hc-ping.com/{TOKEN}'}}\n"
    )
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(app)
    assert "CELERY_HEARTBEAT_URL" == info.value.key
    assert "did you mean CELERY_HEARTBEAT_URLS?" in str(info.value)
    assert TOKEN not in str(info.value)


def test_bad_namespaced_value_names_the_key_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    """A bad CELERY_HEARTBEAT_TIMEOUT is reported as CELERY_HEARTBEAT_TIMEOUT, not heartbeat_timeout."""
    app = django_style_app(tmp_path, monkeypatch, unique_name, "CELERY_HEARTBEAT_TIMEOUT = 'soon'\n")
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(app)
    assert "CELERY_HEARTBEAT_TIMEOUT" == info.value.key
    assert str(info.value).startswith("CELERY_HEARTBEAT_TIMEOUT='soon': ")


def test_setting_without_the_namespace_prefix_warns_with_the_right_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """HEARTBEAT_URLS in Django settings loaded with namespace='CELERY' is never read: install() says so."""
    app = django_style_app(
        tmp_path, monkeypatch, unique_name, f"HEARTBEAT_URLS = {{'t': 'https://hc-ping.com/{TOKEN}'}}\n"
    )
    with caplog.at_level(logging.WARNING, logger="celery_heartbeat"):
        hb = celery_heartbeat.install(app)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("HEARTBEAT_URLS" in w and "CELERY_HEARTBEAT_URLS" in w for w in warnings), warnings
        assert not any(TOKEN in w for w in warnings)
    finally:
        hb.uninstall()


def test_second_install_with_other_settings_warns_naming_what_changed(
    make_app: Callable[..., Celery], caplog: pytest.LogCaptureFixture
) -> None:
    """Installing again with different settings logs a WARNING naming the changed keys, never their values."""
    app = make_app()
    celery_heartbeat.install(app, urls={"proj.report": f"https://hc-ping.com/{TOKEN}"}, timeout=2)
    with caplog.at_level(logging.WARNING, logger="celery_heartbeat"):
        celery_heartbeat.install(app, urls={"proj.report": f"https://hc-ping.com/{TOKEN[::-1]}"}, timeout=2)
        celery_heartbeat.install(app, urls={"proj.report": f"https://hc-ping.com/{TOKEN[::-1]}"}, timeout=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 == len(warnings), warnings  # the identical third install changes nothing and says nothing
    assert "heartbeat_urls" in warnings[0]
    assert "heartbeat_timeout" not in warnings[0]
    assert TOKEN not in warnings[0] and TOKEN[::-1] not in warnings[0]


def test_uninstall_leaves_no_trace(make_app: Callable[..., Celery]) -> None:
    """After uninstall(): no receiver, no beat-liveness entry, no attribute on the app."""
    before = our_receivers()
    app = make_app(heartbeat_beat_url=f"https://hc-ping.com/{TOKEN}")
    hb = celery_heartbeat.install(app)
    assert ENTRY_NAME in app.conf.beat_schedule
    hb.uninstall()
    assert ENTRY_NAME not in (app.conf.beat_schedule or {})
    assert [name for name in vars(app) if "heartbeat" in name] == []
    assert before == our_receivers()
    assert installed(app) is None


def test_reinstalling_registers_no_fork_or_exit_hooks(
    make_app: Callable[..., Celery], monkeypatch: pytest.MonkeyPatch
) -> None:
    """install()/uninstall() cycles that send nothing register no fork hook (Python can never remove one)."""
    registered: list[Any] = []
    real = os.register_at_fork

    def counting(**kwargs: Any) -> None:
        registered.append(kwargs)
        real(**kwargs)

    monkeypatch.setattr(os, "register_at_fork", counting)
    app = make_app()
    for timeout in range(1, 6):
        celery_heartbeat.install(app, timeout=timeout).uninstall()
    assert [] == registered


def test_worker_start_logs_one_info_line_active(make_app: Callable[..., Celery], library_log: Lines) -> None:
    """At worker start one INFO line says the library is active and how many tasks have a monitor."""
    app = make_app(heartbeat_urls={"proj.report": f"https://hc-ping.com/{TOKEN}"})
    with_task(app)
    hb = celery_heartbeat.install(app)
    with start_worker(app, pool="solo", perform_ping_check=False):
        pass
    # Shared tasks other test modules defined are registered on every app: count what this app has.
    mapped = sum(hb.monitor_for(name) is not None for name in app.tasks if not name.startswith("celery"))
    assert mapped >= 1
    lines = [line for line in library_log.lines if line.startswith("celery-heartbeat: active")]
    tasks = "1 task" if mapped == 1 else f"{mapped} tasks"
    assert [
        f"celery-heartbeat: active: {tasks} with a monitor, 0 beat entries monitored automatically, no beat liveness"
    ] == lines


def test_worker_start_logs_one_info_line_disabled(make_app: Callable[..., Celery], library_log: Lines) -> None:
    """With heartbeat_enabled=False the worker says so at start, so nobody waits for pings that never come."""
    app = make_app(heartbeat_enabled=False)
    celery_heartbeat.install(app)
    with start_worker(app, pool="solo", perform_ping_check=False):
        pass
    assert any(line.startswith("celery-heartbeat: disabled") for line in library_log.lines), library_log.lines


def test_sync_on_beat_start_runs_once_under_worker_dash_b(
    make_app: Callable[..., Celery], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`celery worker -B` fires beat_init and beat_embedded_init: heartbeat_sync_on_beat_start syncs once."""
    import threading

    from celery.beat import Service

    import celery_heartbeat.sync.engine as engine

    calls: list[Any] = []
    monkeypatch.setattr(engine, "sync_monitors", lambda app, **kwargs: calls.append(app) or engine.SyncResult())
    app = make_app(heartbeat_healthchecks_ping_key="ping-key-1", heartbeat_sync_on_beat_start=True)
    celery_heartbeat.install(app)
    service = Service(app, schedule_filename=str(tmp_path / "schedule"))
    signals.beat_init.send(sender=service)
    signals.beat_embedded_init.send(sender=service)
    for thread in threading.enumerate():  # every sync thread was started inside the signal handlers
        if thread.name == "celery-heartbeat-sync":
            thread.join(10)
    assert [app] == calls


def test_beat_url_assigned_after_install_counts_when_beat_starts(
    make_app: Callable[..., Celery], tmp_path: Path
) -> None:
    """`app.conf.heartbeat_beat_url = ...` after install(): beat's scheduler gets the entry when beat starts."""
    from celery.beat import Service

    app = make_app()
    celery_heartbeat.install(app)
    app.conf.heartbeat_beat_url = f"https://hc-ping.com/{TOKEN}"
    service = Service(app, schedule_filename=str(tmp_path / "schedule"))
    signals.beat_init.send(sender=service)
    assert ENTRY_NAME in service.scheduler.schedule


def test_invalid_setting_assigned_after_install_raises_where_settings_are_asked_for(
    make_app: Callable[..., Celery],
) -> None:
    """The CLI and sync ask for the app's settings: a bad value assigned after install() raises there."""
    from celery_heartbeat._state import settings_of

    app = make_app()
    celery_heartbeat.install(app)
    app.conf.heartbeat_timeout = -1
    with pytest.raises(ConfigurationError) as info:
        settings_of(app)
    assert "heartbeat_timeout" == info.value.key


@pytest.mark.parametrize("written", ["celery_heartbeat_urls", "CELERY_HEARTBEAT_urls"])
def test_namespaced_setting_in_the_wrong_case_warns(
    written: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str, library_log: Lines
) -> None:
    """Celery reads CELERY_HEARTBEAT_URLS in upper case only: another case is never read, and install() says so."""
    app = django_style_app(tmp_path, monkeypatch, unique_name, f"{written} = {{}}\n")
    celery_heartbeat.install(app).uninstall()
    assert any(f"{written} is ignored" in line and "CELERY_HEARTBEAT_URLS" in line for line in library_log.lines)


def prerun_receivers_of(app: Celery) -> int:
    """This app's task_prerun receivers (other apps of the test process may have their own)."""
    prefix = f"celery_heartbeat:{id(peek(app))}:"
    return sum(1 for key, _ in signals.task_prerun.receivers if str(key[0]).startswith(prefix))


@pytest.mark.parametrize(
    ("monitor", "settings", "prerun"),
    [
        ("url", {}, 0),  # no start pings: Celery skips task_prerun entirely
        ("url", {"send_start": True}, 1),
        ("start option", {}, 1),  # one task's own monitor asks for start pings
    ],
)
def test_a_worker_receives_task_prerun_only_when_a_monitor_sends_start_pings(
    make_app: Callable[..., Celery], receiver: PingReceiver, monitor: str, settings: dict[str, Any], prerun: int
) -> None:
    """Every task pays for a signal somebody receives; start pings still go out where they are wanted."""
    app = make_app(broker="memory://", backend="cache+memory://")
    url = receiver.url("report")
    option = {"url": url, "provider": "healthchecks", "start": True} if monitor == "start option" else None

    @app.task(name="proj.report", shared=False, heartbeat=option)
    def report() -> str:
        return "done"

    mapped = {} if option else {"proj.report": {"url": url, "provider": "healthchecks"}}
    hb = celery_heartbeat.install(app, urls=mapped, coalesce_seconds=0, **settings)
    with start_worker(app, pool="solo", perform_ping_check=False):
        assert prerun == prerun_receivers_of(app)
        report.delay().get(timeout=10)
        assert hb.flush(10.0)
    assert (["/report/start"] if prerun else []) + ["/report"] == [p.path for p in receiver.pings_for("report")]
