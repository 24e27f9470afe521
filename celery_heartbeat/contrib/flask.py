"""Flask health endpoints for Celery: worker liveness and queue depth.

::

    from flask import Flask
    from celery_heartbeat.contrib.flask import health_blueprint
    from proj.celery import app as celery_app

    web = Flask(__name__)
    web.register_blueprint(health_blueprint(celery_app, min_workers=2))

``GET /health/celery`` answers ``{"status":"ok","workers":2}`` (200) or a
``no_workers`` / ``too_few_workers`` / ``down`` body (503).
``GET /health/celery/queue/<queue_name>?threshold=1000`` answers the queue's
depth (``ok`` 200, or ``backlog`` / ``unknown_queue`` / ``down`` 503). A
negative or non-integer ``threshold`` or a queue name over 255 characters gets
400 ``{"error":"..."}``. Needs ``pip install 'celery-heartbeat[flask]'``.
"""

from __future__ import annotations

from typing import Any

from celery_heartbeat.health.web import (
    CONTENT_TYPE,
    HEADERS,
    QUEUE_PATH,
    WORKERS_PATH,
    Answer,
    ProbeOptions,
    missing_extra,
    queue_answer,
    workers_answer,
)

try:
    from flask import Blueprint, Response, request
except ImportError as exc:  # pragma: no cover - exercised in a test that hides flask
    raise missing_extra("flask", "Flask", "flask") from exc

__all__ = ["health_blueprint"]


def health_blueprint(
    celery_app: Any,
    *,
    name: str = "celery_heartbeat_health",
    url_prefix: str | None = None,
    timeout: float = 3.0,
    min_workers: int = 1,
    queue: str | None = None,
    threshold: int = 1000,
    details: bool = False,
    cache_seconds: float = 1.0,
    coverage: bool = False,
) -> Blueprint:
    """A Blueprint with ``GET /health/celery`` and ``GET /health/celery/queue/<queue_name>``.

    ``timeout``, ``min_workers``, ``queue``, ``details``, ``cache_seconds`` and
    ``coverage`` (also per request: ``?coverage=1``) are passed to
    :func:`celery_heartbeat.health.check_workers`; ``threshold``
    is the queue endpoint's default when the request has no ``?threshold=``.
    Pass another ``name`` to register two blueprints (two Celery apps) on one
    Flask app.
    """
    options = ProbeOptions(
        timeout=timeout,
        min_workers=min_workers,
        queue=queue,
        threshold=threshold,
        details=details,
        cache_seconds=cache_seconds,
        coverage=coverage,
    )
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    @blueprint.get(WORKERS_PATH)
    def celery_health() -> Response:
        return _response(workers_answer(celery_app, options, request.args.get("coverage")))

    @blueprint.get(QUEUE_PATH.replace("{queue_name}", "<queue_name>"))
    def celery_queue_health(queue_name: str) -> Response:
        return _response(queue_answer(celery_app, options, queue_name, request.args.get("threshold")))

    return blueprint


def _response(answer: Answer) -> Response:
    return Response(answer.body, status=answer.status_code, mimetype=CONTENT_TYPE, headers=HEADERS)
