"""Secrets never reach CLI output or sync errors: a known token goes in through every path and never comes out.

The token sits in monitor URLs (path and query), the beat-liveness URL, the
project ping key, the management API key and URL, a broker password and a
Healthchecks check UUID. Each case also checks that it took the path it names
(exit code and a line of its output), so a case cannot pass by doing nothing.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from celery_heartbeat.sync import sync_monitors
from celery_heartbeat.testing import PingReceiver

FAKES = Path(__file__).resolve().parent / "sync"
if str(FAKES) not in sys.path:
    sys.path.insert(0, str(FAKES))

from fake_monitoring_api import FakeHealthchecks, Request  # noqa: E402

TOKEN = "Tok3nS3cretQ9"

APP_MODULE = """
import os

from celery import Celery
import celery_heartbeat

app = Celery("{name}", broker=os.environ.get("HB_BROKER", "{broker}"))
app.conf.task_default_queue = "{name}"
app.conf.control_exchange = "{name}"
app.conf.broker_connection_retry_on_startup = True
app.conf.heartbeat_max_attempts = 1
app.conf.heartbeat_timeout = 3.0
app.conf.heartbeat_urls = {{
    "{name}.report": "{base}/report/{token}?key={token}",
    "nightly": {{"url": "{base}/nightly/{token}", "provider": "healthchecks"}},
    "broken": "{base}/broken-{token}",
    "refused": "http://127.0.0.1:{closed}/refused/{token}",
    "generic": "{base}/generic/{token}",
}}
app.conf.heartbeat_beat_url = "{base}/beat/{token}"
app.conf.heartbeat_healthchecks_ping_key = "{token}"
app.conf.heartbeat_healthchecks_api_key = os.environ.get("HB_API_KEY", "{token}")
app.conf.heartbeat_healthchecks_api_url = os.environ.get("HB_API_URL", "http://127.0.0.1:{closed}/{token}")
app.conf.beat_schedule = {{
    "report-hourly": {{"task": "{name}.report", "schedule": 3600.0}},
    "cleanup": {{"task": "{name}.cleanup", "schedule": 600.0}},
    "lost": {{"task": "{name}.cleanup", "schedule": 60.0, "args": [1], "options": {{"queue": "{name}.lost"}}}},
}}
celery_heartbeat.install(app)


@app.task(name="{name}.report")
def report():
    return None


@app.task(name="{name}.cleanup")
def cleanup(*args):
    return None
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Cli:
    module: str
    home: Path
    env: dict[str, str]
    rx: PingReceiver
    closed: int

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "celery", "-A", self.module, "heartbeat", *args]
        done = subprocess.run(cmd, cwd=self.home, env=dict(self.env, **env), capture_output=True, text=True, timeout=90)
        return done


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One generated project, shared by the CLI cases (each runs its own `celery` process)."""
    import os

    from conftest import REDIS_HOST, REDIS_PORT, require_broker

    require_broker("Redis", REDIS_HOST, REDIS_PORT)
    home = tmp_path_factory.mktemp("secrets")
    name = f"s{os.urandom(5).hex()}"
    closed = closed_port()
    with PingReceiver() as rx:
        rx.respond(500, name=f"broken-{TOKEN}")
        broker = f"redis://{REDIS_HOST}:{REDIS_PORT}/{os.environ.get('PYTEST_REDIS_DB', '1')}"
        source = APP_MODULE.format(name=name, broker=broker, base=rx.base_url, token=TOKEN, closed=closed)
        module = f"secrets_{name}"
        (home / f"{module}.py").write_text(textwrap.dedent(source))
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ, PYTHONPATH=f"{home}:{root}")
        yield Cli(module, home, env, rx, closed)


#: (case id, arguments, extra environment, expected exit code, a line fragment proving the path was taken)
CLI_CASES: list[tuple[str, list[str], dict[str, str], int, str]] = [
    ("check", ["check"], {}, 0, "Beat schedule (4 entries):"),
    ("check-strict", ["check", "--strict"], {}, 0, "[monitors as code]"),
    ("check-consumers-down", ["check", "--consumers", "--timeout", "1"], {"HB_BROKER": "down"}, 2, "cannot ask"),
    ("ping-name", ["ping", "nightly", "--start"], {}, 0, "start ping to"),
    ("ping-url", ["ping", "{base}/adhoc/{token}?k={token}"], {}, 0, "success ping to"),
    ("ping-http-500", ["ping", "broken"], {}, 1, "failed: HTTP 500"),
    ("ping-refused", ["ping", "refused"], {}, 1, "failed: connection refused"),
    ("ping-no-signal", ["ping", "generic", "--start"], {}, 1, "generic monitors have no start signal"),
    ("ping-task", ["ping", "{name}.report", "--fail"], {}, 1, "generic monitors have no failure signal"),
    ("ping-unknown-url", ["ping", "ftp://host/{token}"], {}, 1, "configuration error"),
    ("health-down", ["health", "--timeout", "1", "--json"], {"HB_BROKER": "down"}, 1, '"status":"down"'),
    ("sync-refused", ["sync", "--dry-run"], {}, 1, "ConnectionError: connection refused"),
    ("sync-401", ["sync"], {"HB_API_URL": "fake", "HB_API_KEY": "bad-" + TOKEN}, 1, "HTTP 401"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "env", "code", "proof"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_output_never_shows_a_secret(cli: Cli, args: list[str], env: dict[str, str], code: int, proof: str) -> None:
    """The token is in every URL and key the command touches; it is nowhere in stdout or stderr."""
    name = cli.module.removeprefix("secrets_")
    args = [a.format(base=cli.rx.base_url, token=TOKEN, name=name) for a in args]
    extra = dict(env)
    if extra.get("HB_BROKER") == "down":
        extra["HB_BROKER"] = f"redis://:{TOKEN}@127.0.0.1:{cli.closed}/0"
    with FakeHealthchecks(api_key=TOKEN) as fake:
        if extra.get("HB_API_URL") == "fake":
            extra["HB_API_URL"] = fake.url
        done = cli.run(*args, **extra)

    output = done.stdout + done.stderr
    assert (code, True) == (done.returncode, proof in output), output
    assert TOKEN not in output, output


# -- sync errors, in process -------------------------------------------------------------------------


class EchoingHealthchecks(FakeHealthchecks):
    """Rejects every new check with a body that echoes a check URL and its UUID (as an API might)."""

    def handle(self, request: Request) -> tuple[int, Any]:
        if request.method == "POST":
            return 400, {"error": f"conflicts with https://hc-ping.com/{TOKEN}/x ({self.code})"}
        return super().handle(request)

    code = "6e1fbf8f-cd5c-4a9c-8f2e-0123456789ab"


def sync_app(name: str, api_url: str, api_key: str, schedule: dict[str, Any]) -> Celery:
    app = Celery(name, broker="memory://", set_as_current=False)
    app.conf.beat_schedule = schedule
    app.conf.heartbeat_healthchecks_ping_key = TOKEN
    app.conf.heartbeat_healthchecks_api_key = api_key
    app.conf.heartbeat_healthchecks_api_url = api_url
    app.conf.heartbeat_max_attempts = 2
    return app


ENTRY = {"nightly": {"task": "proj.report", "schedule": 3600.0}}


def _wrong_key(name: str, secrets: list[str]) -> tuple[Celery, str]:
    fake = FakeHealthchecks(api_key="the-right-key-0123")
    secrets.append(TOKEN)
    return sync_app(name, _serve(fake), TOKEN, ENTRY), "HTTP 401"


def _url_with_token_refused(name: str, secrets: list[str]) -> tuple[Celery, str]:
    secrets.append(TOKEN)
    return sync_app(name, f"http://127.0.0.1:{closed_port()}/{TOKEN}", "key-0123456789", ENTRY), "connection refused"


def _echoed_in_body(name: str, secrets: list[str]) -> tuple[Celery, str]:
    fake = EchoingHealthchecks(api_key=TOKEN)
    secrets += [TOKEN, EchoingHealthchecks.code]
    return sync_app(name, _serve(fake), TOKEN, ENTRY), "HTTP 400"


def _check_uuid_in_path(name: str, secrets: list[str]) -> tuple[Celery, str]:
    fake = FakeHealthchecks(api_key=TOKEN)
    secrets += [TOKEN, fake.add(name="gone", slug="gone", tags=f"celery-heartbeat:{name}")]
    fake.vanish_on = "DELETE"  # the DELETE /api/v3/checks/<uuid> fails, then connections are refused
    return sync_app(name, _serve(fake), TOKEN, ENTRY | {"other": {"task": "p.o", "schedule": 60.0}}), "connection"


_RUNNING: list[FakeHealthchecks] = []


def _serve(fake: FakeHealthchecks) -> str:
    fake.__enter__()
    _RUNNING.append(fake)
    return fake.url


@pytest.fixture
def fakes() -> Iterator[None]:
    yield
    while _RUNNING:
        _RUNNING.pop().__exit__(None, None, None)


SYNC_CASES = {
    "wrong-api-key": _wrong_key,
    "api-url-refused": _url_with_token_refused,
    "error-body-echoes-secrets": _echoed_in_body,
    "delete-path-holds-check-uuid": _check_uuid_in_path,
}


@pytest.mark.parametrize("case", sorted(SYNC_CASES))
def test_sync_errors_and_logs_never_show_a_secret(
    case: str, unique_name: str, fakes: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Each provider failure is an error naming what failed, with no secret in the result, its text or the logs."""
    secrets: list[str] = []
    app, proof = SYNC_CASES[case](unique_name, secrets)

    with caplog.at_level(logging.DEBUG):
        result = sync_monitors(app, prune=True)
    text = result.format() + repr(result) + caplog.text

    assert not result.ok
    assert proof in "\n".join(result.errors), result.format()
    assert [] == [secret for secret in secrets if secret in text], text
