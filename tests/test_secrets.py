"""Secrets never leak: every error, log line and repr the library produces, fed a URL holding a known token.

Each case is one way the library can show a value: a call that raises, logs, or
returns something whose repr is shown. The token must appear nowhere, not even
its first 8 characters (redaction keeps 4). Other paths (CLI output, sync errors)
join by adding cases to `CASES`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery

import celery_heartbeat
from celery_heartbeat._redact import Secret
from celery_heartbeat._state import settings_of
from celery_heartbeat.beat.automonitor import AutoMonitors, plan_entries
from celery_heartbeat.beat.entries import read_entries
from celery_heartbeat.beat.liveness import liveness_of
from celery_heartbeat.config.monitor import parse_monitor
from celery_heartbeat.config.providers import build_request
from celery_heartbeat.delivery.ping import OutgoingPing

TOKEN = "c2354d53d2e4f6a8"  # short enough to fit the old "schemeless values up to 40 characters" hole
URL = f"https://hc-ping.com/{TOKEN}"
SCHEMELESS = f"nosnch.in/{TOKEN}"


def app_with(**conf: Any) -> Celery:
    app = Celery("secrets", broker="memory://", set_as_current=False)
    app.conf.update(conf)
    return app


@dataclass
class Case:
    """One path to the user's eyes: `run` returns what it shows (or raises, or logs)."""

    name: str
    run: Callable[[], Any]


def _install(**conf: Any) -> Callable[[], Any]:
    return lambda: celery_heartbeat.install(app_with(**conf))


def _repr_of(build: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: repr(build())


def _installed_then(action: Callable[[celery_heartbeat.Heartbeat], Any], **conf: Any) -> Callable[[], Any]:
    def run() -> Any:
        hb = celery_heartbeat.install(app_with(**conf))
        try:
            return action(hb)
        finally:
            hb.uninstall()

    return run


def _reinstall() -> Any:
    app = app_with()
    celery_heartbeat.install(app, urls={"t": URL})
    hb = celery_heartbeat.install(app, urls={"t": URL + "x"})
    hb.uninstall()


def _late_bad_value() -> Any:
    app = app_with()

    @app.task(name="proj.t", shared=False)
    def t() -> None: ...

    hb = celery_heartbeat.install(app)
    app.conf.heartbeat_urls = [URL]
    t.apply()
    hb.uninstall()


def _ping_task(target: str) -> Any:
    from celery_heartbeat.config.names import PING_TASK

    app = app_with()
    hb = celery_heartbeat.install(app)
    try:
        return app.tasks[PING_TASK].apply(kwargs={"target": target}).get()
    finally:
        hb.uninstall()


def _auto_entries() -> Any:
    app = app_with(
        heartbeat_healthchecks_ping_key=TOKEN,
        beat_schedule={"nightly": {"task": "proj.nightly", "schedule": 60.0}},
    )
    settings = settings_of(app)
    auto = AutoMonitors(app, settings, lambda name: None)
    planned = plan_entries(app, settings, lambda name: None, read_entries(app))
    return [repr(auto.lookup("proj.nightly", [], {})), repr(planned), repr(settings)]


CASES = [
    # ConfigurationError, whatever the shape of the bad value
    Case("list instead of a mapping", _install(heartbeat_urls=[URL])),
    Case("tuple value (stray comma)", _install(heartbeat_urls={"t": (URL,)})),
    Case("list inside a monitor dict", _install(heartbeat_urls={"t": {"url": [URL]}})),
    Case("schemeless short value", _install(heartbeat_urls={"t": SCHEMELESS})),
    Case("schemeless beat url", _install(heartbeat_beat_url=SCHEMELESS)),
    Case("bad scheme", _install(heartbeat_urls={"t": f"ftp://hc-ping.com/{TOKEN}"})),
    Case("url with a space", _install(heartbeat_urls={"t": f"https://hc-ping.com/{TOKEN} x"})),
    Case("unknown monitor key", _install(heartbeat_urls={"t": {"url": URL, "grace": TOKEN}})),
    Case("nested list of dicts", _install(heartbeat_urls={"t": [{"url": URL}]})),
    Case("set of urls", _install(heartbeat_urls={"t": {URL}})),
    Case("unknown setting holding a url", _install(heartbeat_url={"t": URL})),
    Case("key with a space", _install(heartbeat_healthchecks_ping_key=f"{TOKEN} x")),
    Case("two providers' keys", _install(heartbeat_healthchecks_ping_key=TOKEN, heartbeat_cronitor_api_key=TOKEN)),
    Case("bad prefix", _install(heartbeat_monitor_prefix=TOKEN.upper())),
    Case("install_beat_liveness bad url", lambda: celery_heartbeat.install_beat_liveness(app_with(), SCHEMELESS)),
    Case("heartbeat_signature bad url", lambda: celery_heartbeat.heartbeat_signature({"url": SCHEMELESS})),
    Case("heartbeat_signature schemeless name", lambda: celery_heartbeat.heartbeat_signature(SCHEMELESS)),
    Case("heartbeat_beat_url schemeless name", _install(heartbeat_beat_url=SCHEMELESS)),
    Case("bad value assigned after install", _late_bad_value),
    Case("ping task: unknown monitor name", lambda: _ping_task(TOKEN)),
    # log lines
    Case("re-install warning", _reinstall),
    # reprs
    Case("Monitor", _repr_of(lambda: parse_monitor("k", URL))),
    Case("OutgoingPing", _repr_of(lambda: OutgoingPing(parse_monitor("k", URL), "success", "id"))),  # type: ignore[arg-type]
    Case("wire request", _repr_of(lambda: build_request("healthchecks", URL, "start", run_id="r"))),
    Case("Settings", _installed_then(lambda hb: repr(hb.settings), heartbeat_urls={"t": URL, "u": {"url": URL}})),
    Case("Heartbeat", _installed_then(repr, heartbeat_urls={"t": URL})),
    Case("Secret", _repr_of(lambda: (Secret(TOKEN), str(Secret(TOKEN))))),
    Case(
        "beat liveness",
        _installed_then(lambda hb: repr(liveness_of(hb._state.app)), heartbeat_beat_url=URL),
    ),
    Case("auto-monitor urls hold the ping key", _auto_entries),
]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_log_lines() -> Iterator[_Lines]:
    logger = logging.getLogger("celery_heartbeat")
    handler, level = _Lines(), logger.level
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_token_appears_nowhere(case: Case, all_log_lines: _Lines) -> None:
    """Whatever the path (error, log line, repr), neither the token nor its first 8 characters are shown."""
    shown: list[str] = []
    try:
        shown.append(str(case.run()))
    except Exception as exc:
        shown += [str(exc), repr(exc)]
    shown += all_log_lines.lines
    text = "\n".join(shown)
    assert text.strip(), "the case showed nothing: it tests nothing"
    assert TOKEN[:8] not in text
