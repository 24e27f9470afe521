"""The Django adapter through Django's test client, against a live worker on Redis."""

from __future__ import annotations

import importlib
import sys
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("django")

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.urls import include, path

from . import DOWN_BODY, Live, down_app, isolated_app, live_worker, lost_entry_app

if not settings.configured:
    settings.configure(ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__, SECRET_KEY="tests", DEBUG=False)
    django.setup()

from celery_heartbeat.contrib import django as adapter  # after settings.configure()

urlpatterns = [
    path("", include("celery_heartbeat.contrib.django")),
    path("custom/health", adapter.celery_health, {"details": True, "timeout": 0.5}),
    path("custom/queue/<str:queue_name>", adapter.celery_queue_health, {"threshold": 2}),
]

PROJECT_MODULE = "hb_django_test_project"


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One live worker on Redis for this module, its app reachable as ``hb_django_test_project.app``."""
    with live_worker() as running:
        project = types.ModuleType(PROJECT_MODULE)
        project.app = running.app  # type: ignore[attr-defined]
        sys.modules[PROJECT_MODULE] = project
        try:
            yield running
        finally:
            del sys.modules[PROJECT_MODULE]


def get(url: str, app: Any, **extra: Any) -> Any:
    """GET ``url`` through Django's test client with CELERY_HEARTBEAT_APP set to ``app``."""
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], CELERY_HEARTBEAT_APP=app):
        return Client().get(url, **extra)


def test_workers_endpoint_answers_compact_ok(live: Live) -> None:
    """GET /health/celery with the app named by a dotted path: 200, the exact compact body, no-store."""
    response = get("/health/celery", f"{PROJECT_MODULE}.app")

    assert 200 == response.status_code
    assert b'{"status":"ok","workers":1}' == response.content
    assert "application/json" == response["Content-Type"]
    assert "no-store" == response["Cache-Control"]


def test_the_setting_may_hold_the_app_itself(live: Live) -> None:
    """CELERY_HEARTBEAT_APP may be the Celery app object instead of its dotted path."""
    response = get("/health/celery", live.app)

    assert (200, b'{"status":"ok","workers":1}') == (response.status_code, response.content)


def test_without_the_setting_the_current_app_is_probed(live: Live) -> None:
    """With no CELERY_HEARTBEAT_APP the view probes celery.current_app."""
    live.app.set_current()

    response = get("/health/celery", None)

    assert (200, b'{"status":"ok","workers":1}') == (response.status_code, response.content)


def test_a_dotted_path_to_nothing_is_improperly_configured(live: Live) -> None:
    """A CELERY_HEARTBEAT_APP that names nothing raises ImproperlyConfigured naming the setting."""
    with pytest.raises(ImproperlyConfigured) as raised:
        get("/health/celery", f"{PROJECT_MODULE}.nothing")

    assert str(raised.value).startswith(
        f"settings.CELERY_HEARTBEAT_APP = '{PROJECT_MODULE}.nothing' does not name a Celery app"
    )


def test_view_arguments_set_the_options(live: Live) -> None:
    """Options given as path() kwargs reach the checks: details on one view, a threshold on the other."""
    workers = get("/custom/health", live.app)
    queue = get(f"/custom/queue/{live.queue}", live.app)

    assert f'{{"status":"ok","workers":1,"detail":["{live.worker}"]}}'.encode() == workers.content
    expected = f'{{"status":"backlog","queue":"{live.queue}","depth":3,"threshold":2}}'
    assert (503, expected.encode()) == (queue.status_code, queue.content)


def test_no_worker_is_503_no_workers(live: Live) -> None:
    """A control exchange nobody listens on: 503 and no_workers after the timeout."""
    response = get("/custom/health", isolated_app(live.url, f"t{uuid.uuid4().hex[:10]}"))

    assert (503, b'{"status":"no_workers","workers":0,"detail":[]}') == (response.status_code, response.content)


def test_queue_endpoint_reports_depth_and_threshold(live: Live) -> None:
    """The queue holds 3 messages: ok under the default threshold, 503 backlog over ?threshold=2."""
    ok = get(f"/health/celery/queue/{live.queue}", live.app)
    backlog = get(f"/health/celery/queue/{live.queue}", live.app, data={"threshold": "2"})

    assert 200 == ok.status_code
    assert f'{{"status":"ok","queue":"{live.queue}","depth":3,"threshold":1000}}'.encode() == ok.content
    assert 503 == backlog.status_code
    assert f'{{"status":"backlog","queue":"{live.queue}","depth":3,"threshold":2}}'.encode() == backlog.content


@pytest.mark.parametrize("threshold", ["-1", "abc", "1.5", "", "1" * 19])
def test_bad_threshold_is_400_with_a_clear_message(live: Live, threshold: str) -> None:
    """A negative, non-integer, empty or absurd threshold gets 400 and says what is allowed."""
    response = get(f"/health/celery/queue/{live.queue}", live.app, data={"threshold": threshold})

    assert 400 == response.status_code
    assert b'{"error":"threshold must be a non-negative integer of at most 18 digits"}' == response.content


def test_overlong_queue_name_is_400(live: Live) -> None:
    """A queue name over 255 characters is refused before anything reaches the broker."""
    response = get("/health/celery/queue/" + "q" * 256, live.app)

    assert (400, b'{"error":"queue name must be at most 255 characters"}') == (response.status_code, response.content)


def test_down_broker_is_503_down() -> None:
    """A broker on a closed port: both endpoints answer 503 with status down."""
    app = down_app()

    workers = get("/health/celery", app)
    queue = get("/health/celery/queue/default", app)

    assert (503, DOWN_BODY.encode()) == (workers.status_code, workers.content)
    expected = (
        b'{"status":"down","queue":"default","threshold":1000,"error":"broker unreachable: ConnectionRefusedError"}'
    )
    assert (503, expected) == (queue.status_code, queue.content)


def test_only_get_and_head_are_answered() -> None:
    """A POST to a probe path gets 405 naming the allowed methods."""
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], CELERY_HEARTBEAT_APP=down_app()):
        response = Client().post("/health/celery")

    assert (405, "GET, HEAD") == (response.status_code, response["Allow"])


def test_missing_django_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Django, importing the adapter raises ImportError with the pip command for the extra."""
    for name in [name for name in sys.modules if name == "django" or name.startswith("django.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "celery_heartbeat.contrib.django")

    with pytest.raises(ImportError) as raised:
        importlib.import_module("celery_heartbeat.contrib.django")

    assert "celery_heartbeat.contrib.django needs Django: pip install 'celery-heartbeat[django]'" == str(raised.value)


def test_coverage_query_reports_a_beat_entry_whose_queue_has_no_consumer(live: Live) -> None:
    """?coverage=1 adds the schedule coverage: 503 uncovered naming the entry."""
    app, body = lost_entry_app(live)

    response = get("/health/celery?coverage=true", app)

    assert (503, body.encode()) == (response.status_code, response.content)
