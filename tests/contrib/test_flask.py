"""The Flask adapter through Flask's test client, against a live worker on Redis."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("flask")

from flask import Flask
from flask.testing import FlaskClient

from celery_heartbeat.contrib.flask import health_blueprint

from . import DOWN_BODY, Live, down_app, isolated_app, live_worker, lost_entry_app


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One live worker on Redis for this module."""
    with live_worker() as running:
        yield running


def client_for(celery_app: Any, **options: Any) -> FlaskClient:
    web = Flask(__name__)
    web.register_blueprint(health_blueprint(celery_app, cache_seconds=0, **options))
    return web.test_client()


def test_workers_endpoint_answers_compact_ok(live: Live) -> None:
    """GET /health/celery with a live worker: 200, the exact compact body, JSON and no-store."""
    response = client_for(live.app).get("/health/celery")

    assert 200 == response.status_code
    assert '{"status":"ok","workers":1}' == response.get_data(as_text=True)
    assert "application/json" == response.headers["Content-Type"]
    assert "no-store" == response.headers["Cache-Control"]


def test_details_list_the_worker(live: Live) -> None:
    """details=True adds the answering worker's host name."""
    response = client_for(live.app, details=True).get("/health/celery")

    assert f'{{"status":"ok","workers":1,"detail":["{live.worker}"]}}' == response.get_data(as_text=True)


def test_no_worker_is_503_no_workers(live: Live) -> None:
    """A control exchange nobody listens on: 503 and no_workers after the timeout."""
    client = client_for(isolated_app(live.url, f"t{uuid.uuid4().hex[:10]}"), timeout=0.5)

    response = client.get("/health/celery")

    assert (503, '{"status":"no_workers","workers":0}') == (response.status_code, response.get_data(as_text=True))


def test_queue_endpoint_reports_depth_and_threshold(live: Live) -> None:
    """The queue holds 3 messages: ok under the default threshold, 503 backlog over ?threshold=2."""
    client = client_for(live.app)

    ok = client.get(f"/health/celery/queue/{live.queue}")
    backlog = client.get(f"/health/celery/queue/{live.queue}?threshold=2")

    assert 200 == ok.status_code
    assert f'{{"status":"ok","queue":"{live.queue}","depth":3,"threshold":1000}}' == ok.get_data(as_text=True)
    assert 503 == backlog.status_code
    expected = f'{{"status":"backlog","queue":"{live.queue}","depth":3,"threshold":2}}'
    assert expected == backlog.get_data(as_text=True)


@pytest.mark.parametrize("threshold", ["-1", "abc", "1.5", "", "1" * 19])
def test_bad_threshold_is_400_with_a_clear_message(live: Live, threshold: str) -> None:
    """A negative, non-integer, empty or absurd threshold gets 400 and says what is allowed."""
    response = client_for(live.app).get(f"/health/celery/queue/{live.queue}", query_string={"threshold": threshold})

    assert 400 == response.status_code
    expected = '{"error":"threshold must be a non-negative integer of at most 18 digits"}'
    assert expected == response.get_data(as_text=True)


def test_overlong_queue_name_is_400(live: Live) -> None:
    """A queue name over 255 characters is refused before anything reaches the broker."""
    response = client_for(live.app).get("/health/celery/queue/" + "q" * 256)

    assert 400 == response.status_code
    assert '{"error":"queue name must be at most 255 characters"}' == response.get_data(as_text=True)


def test_down_broker_is_503_down() -> None:
    """A broker on a closed port: both endpoints answer 503 with status down."""
    client = client_for(down_app(), timeout=1.0)

    workers = client.get("/health/celery")
    queue = client.get("/health/celery/queue/default")

    assert (503, DOWN_BODY) == (workers.status_code, workers.get_data(as_text=True))
    expected = (
        '{"status":"down","queue":"default","threshold":1000,"error":"broker unreachable: ConnectionRefusedError"}'
    )
    assert (503, expected) == (queue.status_code, queue.get_data(as_text=True))


def test_two_blueprints_need_two_names() -> None:
    """Two Celery apps on one Flask app: the second blueprint takes its own name and prefix."""
    web = Flask(__name__)
    web.register_blueprint(health_blueprint(down_app(), cache_seconds=0))
    web.register_blueprint(health_blueprint(down_app(), name="other", url_prefix="/other", cache_seconds=0))

    rules = sorted(rule.rule for rule in web.url_map.iter_rules() if rule.endpoint != "static")

    expected = [
        "/health/celery",
        "/health/celery/queue/<queue_name>",
        "/other/health/celery",
        "/other/health/celery/queue/<queue_name>",
    ]
    assert expected == rules


def test_missing_flask_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Flask, importing the adapter raises ImportError with the pip command for the extra."""
    monkeypatch.setitem(sys.modules, "flask", None)
    monkeypatch.delitem(sys.modules, "celery_heartbeat.contrib.flask")

    with pytest.raises(ImportError) as raised:
        importlib.import_module("celery_heartbeat.contrib.flask")

    assert "celery_heartbeat.contrib.flask needs Flask: pip install 'celery-heartbeat[flask]'" == str(raised.value)


def test_coverage_query_reports_a_beat_entry_whose_queue_has_no_consumer(live: Live) -> None:
    """?coverage=1 adds the schedule coverage: 503 uncovered naming the entry; a bad value is 400."""
    app, body = lost_entry_app(live)

    by_query = client_for(app, timeout=0.5).get("/health/celery?coverage=1")
    bad = client_for(app).get("/health/celery?coverage=maybe")

    assert (503, body) == (by_query.status_code, by_query.get_data(as_text=True))
    expected = '{"error":"coverage must be a boolean: 1/0, true/false, yes/no or on/off"}'
    assert (400, expected) == (bad.status_code, bad.get_data(as_text=True))
