"""FastAPI health endpoints for Celery: worker liveness and queue depth.

::

    from fastapi import FastAPI
    from celery_heartbeat.contrib.fastapi import health_router
    from proj.celery import app as celery_app

    api = FastAPI()
    api.include_router(health_router(celery_app, min_workers=2))

``GET /health/celery`` answers ``{"status":"ok","workers":2}`` (200) or a
``no_workers`` / ``too_few_workers`` / ``down`` body (503).
``GET /health/celery/queue/{queue_name}?threshold=1000`` answers the queue's
depth (``ok`` 200, or ``backlog`` / ``unknown_queue`` / ``down`` 503). Invalid
input (a negative or non-integer ``threshold``, a queue name over 255
characters) gets FastAPI's 422 validation answer.

The endpoints are plain ``def`` functions on purpose: a probe blocks on the
broker for up to ``timeout`` seconds, and FastAPI runs plain functions in its
thread pool, never on the event loop. Needs ``pip install 'celery-heartbeat[fastapi]'``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint
# annotations at runtime, which must work on Python 3.9.
from typing import Annotated, Any, Optional, Union

from celery_heartbeat.config.checks import MAX_QUEUE_NAME_LENGTH
from celery_heartbeat.health.web import (
    CONTENT_TYPE,
    HEADERS,
    MAX_THRESHOLD_DIGITS,
    QUEUE_PATH,
    WORKERS_PATH,
    Answer,
    ProbeOptions,
    missing_extra,
    queue_answer,
    workers_answer,
)

try:
    from fastapi import APIRouter, Path, Query
    from fastapi.responses import Response
except ImportError as exc:  # pragma: no cover - exercised in a test that hides fastapi
    raise missing_extra("fastapi", "FastAPI", "fastapi") from exc

__all__ = ["health_router"]

_RESPONSES: dict[Union[int, str], dict[str, Any]] = {
    200: {"description": 'Healthy: compact JSON such as {"status":"ok","workers":2}'},
    503: {"description": "Unhealthy: the body's status says why"},
}


def health_router(
    celery_app: Any,
    *,
    timeout: float = 3.0,
    min_workers: int = 1,
    queue: Optional[str] = None,
    threshold: int = 1000,
    details: bool = False,
    cache_seconds: float = 1.0,
    coverage: bool = False,
) -> APIRouter:
    """An APIRouter with ``GET /health/celery`` and ``GET /health/celery/queue/{queue_name}``.

    ``timeout``, ``min_workers``, ``queue``, ``details``, ``cache_seconds`` and
    ``coverage`` (also per request: ``?coverage=1``) are passed to
    :func:`celery_heartbeat.health.check_workers`; ``threshold``
    is the queue endpoint's default when the request has no ``?threshold=``.
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
    router = APIRouter(tags=["health"])

    @router.get(WORKERS_PATH, response_class=Response, responses=_RESPONSES)
    def celery_health(
        coverage: Annotated[
            Optional[bool],
            Query(description="Also require a live consumer for every beat entry's and monitored task's queue"),
        ] = None,
    ) -> Response:
        """Are enough Celery workers alive (and, with coverage, is every periodic task's queue consumed)?"""
        raw = None if coverage is None else str(int(coverage))
        return _response(workers_answer(celery_app, options, raw))

    @router.get(QUEUE_PATH, response_class=Response, responses=_RESPONSES)
    def celery_queue_health(
        queue_name: Annotated[str, Path(min_length=1, max_length=MAX_QUEUE_NAME_LENGTH)],
        threshold: Annotated[
            Optional[int],
            Query(
                ge=0,
                le=10**MAX_THRESHOLD_DIGITS - 1,
                description="Most ready messages that still count as healthy",
            ),
        ] = None,
    ) -> Response:
        """Is this queue's backlog within the threshold?"""
        raw = None if threshold is None else str(threshold)
        return _response(queue_answer(celery_app, options, queue_name, raw))

    return router


def _response(answer: Answer) -> Response:
    return Response(content=answer.body, status_code=answer.status_code, media_type=CONTENT_TYPE, headers=HEADERS)
