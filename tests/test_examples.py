"""The framework examples: each wires install() from the environment and serves the health endpoints."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from celery import _state

from celery_heartbeat._heartbeat import installed

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MONITOR_URL = "https://hc-ping.com/0b8e5d6c-2f3a-4c1e-9d7b-6a5f4e3d2c1b"
EXAMPLE_PACKAGES = ("fastapi_app", "flask_app")


@pytest.fixture
def import_example(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[Callable[[str], ModuleType]]:
    """Import modules from examples/ with their settings in the environment; forget them afterwards."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("CELERY_BROKER_URL", redis_url)
    monkeypatch.setenv("HEARTBEAT_NIGHTLY_REPORT_URL", MONITOR_URL)
    monkeypatch.delenv("HEARTBEAT_BEAT_URL", raising=False)
    previous_app = _state.get_current_app()
    try:
        yield importlib.import_module
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in EXAMPLE_PACKAGES]:
            module = sys.modules.pop(name)
            celery_app = getattr(module, "app", None)
            handle = installed(celery_app) if celery_app is not None and hasattr(celery_app, "conf") else None
            if handle is not None:
                handle.uninstall()
        _state._set_current_app(previous_app)


def test_fastapi_example_answers_queue_health(import_example: Callable[[str], ModuleType], unique_name: str) -> None:
    """The FastAPI example's queue health endpoint reports an empty queue as ok, and its task is mapped."""
    from fastapi.testclient import TestClient

    web = import_example("fastapi_app.main")
    worker = import_example("fastapi_app.worker")
    with TestClient(web.app) as client:
        response = client.get(f"/health/celery/queue/{unique_name}", params={"threshold": 10})
    assert 200 == response.status_code
    assert {"status": "ok", "queue": unique_name, "depth": 0, "threshold": 10} == response.json()
    handle = installed(worker.app)
    assert handle is not None
    monitor = handle.monitor_for("fastapi_app.worker.nightly_report")
    assert (MONITOR_URL, "healthchecks") == (monitor and monitor.url, monitor and monitor.provider)


def test_flask_example_answers_queue_health(import_example: Callable[[str], ModuleType], unique_name: str) -> None:
    """The Flask example's queue health endpoint reports an empty queue as ok, and its task is mapped."""
    web = import_example("flask_app.web")
    worker = import_example("flask_app.worker")
    response = web.app.test_client().get(f"/health/celery/queue/{unique_name}?threshold=10")
    assert 200 == response.status_code
    assert {"status": "ok", "queue": unique_name, "depth": 0, "threshold": 10} == response.get_json()
    handle = installed(worker.app)
    assert handle is not None
    monitor = handle.monitor_for("flask_app.worker.nightly_report")
    assert (MONITOR_URL, "healthchecks") == (monitor and monitor.url, monitor and monitor.provider)


# Runs in a subprocess so the example's Django settings never leak into other tests.
_DJANGO_REQUEST = """
import json, sys
import django
from django.test import Client
from django.test.utils import setup_test_environment

django.setup()
setup_test_environment()
from proj import celery_app
from celery_heartbeat._heartbeat import installed

response = Client().get(sys.argv[1])
monitor = installed(celery_app).monitor_for("reports.tasks.nightly_report")
print(json.dumps({
    "status": response.status_code,
    "body": json.loads(response.content),
    "monitor": monitor and monitor.url,
}))
"""


@pytest.mark.slow
def test_django_example_answers_queue_health(clean_env: dict[str, str], redis_url: str, unique_name: str) -> None:
    """The Django example serves queue health through its urls.py and maps its task from settings."""
    project = EXAMPLES / "django_project"
    env = dict(clean_env)
    env["PYTHONPATH"] = f"{project}:{env['PYTHONPATH']}"
    env["DJANGO_SETTINGS_MODULE"] = "proj.settings"
    env["CELERY_BROKER_URL"] = redis_url
    env["HEARTBEAT_NIGHTLY_REPORT_URL"] = MONITOR_URL
    env.pop("HEARTBEAT_BEAT_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", _DJANGO_REQUEST, f"/health/celery/queue/{unique_name}?threshold=10"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == done.returncode, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected_body = {"status": "ok", "queue": unique_name, "depth": 0, "threshold": 10}
    assert {"status": 200, "body": expected_body, "monitor": MONITOR_URL} == result
