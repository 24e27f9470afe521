"""The FastAPI adapter through FastAPI's test client, against a live worker on Redis."""

from __future__ import annotations

import importlib
import inspect
import sys
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from celery_heartbeat.contrib.fastapi import health_router

from . import DOWN_BODY, Live, down_app, isolated_app, live_worker, lost_entry_app


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One live worker on Redis for this module."""
    with live_worker() as running:
        yield running


def client_for(celery_app: object, **options: object) -> TestClient:
    api = FastAPI()
    api.include_router(health_router(celery_app, cache_seconds=0, **options))  # type: ignore[arg-type]
    return TestClient(api)


def test_workers_endpoint_answers_compact_ok(live: Live) -> None:
    """GET /health/celery with a live worker: 200, the exact compact body, JSON and no-store."""
    response = client_for(live.app).get("/health/celery")

    assert 200 == response.status_code
    assert '{"status":"ok","workers":1}' == response.text
    assert "application/json" == response.headers["content-type"]
    assert "no-store" == response.headers["cache-control"]


def test_details_list_the_worker(live: Live) -> None:
    """details=True adds the answering worker's host name."""
    response = client_for(live.app, details=True).get("/health/celery")

    assert f'{{"status":"ok","workers":1,"detail":["{live.worker}"]}}' == response.text


def test_no_worker_is_503_no_workers(live: Live) -> None:
    """A control exchange nobody listens on: 503 and no_workers after the timeout."""
    response = client_for(isolated_app(live.url, f"t{uuid.uuid4().hex[:10]}"), timeout=0.5).get("/health/celery")

    assert (503, '{"status":"no_workers","workers":0}') == (response.status_code, response.text)


def test_queue_endpoint_reports_depth_and_threshold(live: Live) -> None:
    """The queue holds 3 messages: ok under the default threshold, 503 backlog over ?threshold=2."""
    client = client_for(live.app)

    ok = client.get(f"/health/celery/queue/{live.queue}")
    backlog = client.get(f"/health/celery/queue/{live.queue}", params={"threshold": "2"})

    assert 200 == ok.status_code
    assert f'{{"status":"ok","queue":"{live.queue}","depth":3,"threshold":1000}}' == ok.text
    assert 503 == backlog.status_code
    assert f'{{"status":"backlog","queue":"{live.queue}","depth":3,"threshold":2}}' == backlog.text


@pytest.mark.parametrize("threshold", ["-1", "abc", "1.5", "1" * 19])
def test_bad_threshold_is_422_naming_it(live: Live, threshold: str) -> None:
    """A negative, non-integer or absurd threshold gets FastAPI's 422 pointing at the query's threshold."""
    response = client_for(live.app).get(f"/health/celery/queue/{live.queue}", params={"threshold": threshold})

    assert 422 == response.status_code
    assert ["query", "threshold"] == response.json()["detail"][0]["loc"]


def test_overlong_queue_name_is_422(live: Live) -> None:
    """A queue name over 255 characters is refused before anything reaches the broker."""
    response = client_for(live.app).get("/health/celery/queue/" + "q" * 256)

    assert 422 == response.status_code
    assert ["path", "queue_name"] == response.json()["detail"][0]["loc"]
    assert "at most 255 characters" in response.json()["detail"][0]["msg"]


def test_down_broker_is_503_down() -> None:
    """A broker on a closed port: both endpoints answer 503 with status down."""
    client = client_for(down_app(), timeout=1.0)

    workers = client.get("/health/celery")
    queue = client.get("/health/celery/queue/default")

    assert (503, DOWN_BODY) == (workers.status_code, workers.text)
    expected = (
        '{"status":"down","queue":"default","threshold":1000,"error":"broker unreachable: ConnectionRefusedError"}'
    )
    assert (503, expected) == (queue.status_code, queue.text)


def test_endpoints_are_plain_functions_run_off_the_event_loop() -> None:
    """Both endpoints are plain def functions, so FastAPI runs the blocking probe in its thread pool."""
    router = health_router(down_app())
    routes = {route.path: route for route in router.routes if isinstance(route, APIRoute)}

    assert ["/health/celery", "/health/celery/queue/{queue_name}"] == sorted(routes)
    assert [False, False] == [inspect.iscoroutinefunction(route.endpoint) for route in routes.values()]
    assert [{"GET"}, {"GET"}] == [route.methods for route in routes.values()]


def test_missing_fastapi_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without FastAPI, importing the adapter raises ImportError with the pip command for the extra."""
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.setitem(sys.modules, "fastapi.responses", None)
    monkeypatch.delitem(sys.modules, "celery_heartbeat.contrib.fastapi")

    with pytest.raises(ImportError) as raised:
        importlib.import_module("celery_heartbeat.contrib.fastapi")

    assert "celery_heartbeat.contrib.fastapi needs FastAPI: pip install 'celery-heartbeat[fastapi]'" == str(
        raised.value
    )


def test_coverage_query_reports_a_beat_entry_whose_queue_has_no_consumer(live: Live) -> None:
    """?coverage=1 (or coverage=True) adds the schedule coverage: 503 uncovered naming the entry; ?coverage=0 not."""
    app, body = lost_entry_app(live)

    by_query = client_for(app, timeout=0.5).get("/health/celery?coverage=1")
    by_option = client_for(app, timeout=0.5, coverage=True).get("/health/celery")
    switched_off = client_for(app, coverage=True).get("/health/celery?coverage=0")

    assert (503, body) == (by_query.status_code, by_query.text)
    assert (503, body) == (by_option.status_code, by_option.text)
    assert (200, '{"status":"ok","workers":1}') == (switched_off.status_code, switched_off.text)
