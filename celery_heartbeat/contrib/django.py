"""Django health endpoints for Celery: worker liveness and queue depth.

In the project's ``urls.py``::

    from django.urls import include, path

    urlpatterns = [
        ...,
        path("", include("celery_heartbeat.contrib.django")),
    ]

which serves ``GET /health/celery`` (``{"status":"ok","workers":1}``, or a
``no_workers`` / ``too_few_workers`` / ``down`` body with 503) and
``GET /health/celery/queue/<queue_name>?threshold=1000`` (``ok``, or
``backlog`` / ``unknown_queue`` / ``down`` with 503). A negative or
non-integer ``threshold`` or a queue name over 255 characters gets 400
``{"error":"..."}``.

Which Celery app: the ``CELERY_HEARTBEAT_APP`` setting, a dotted path to it
(``"proj.celery.app"``) or the app itself; without the setting,
``celery.current_app`` (the app your ``proj/celery.py`` created, once
``proj/__init__.py`` imports it as the Celery docs recommend).

Options go in as extra view arguments, Django's usual way::

    path("health/celery", celery_health, {"min_workers": 2, "details": True}),
    path("health/celery/queue/<str:queue_name>", celery_queue_health, {"threshold": 500}),

accepted keys: ``app`` (overrides the setting), ``timeout``, ``min_workers``,
``queue``, ``threshold``, ``details``, ``cache_seconds`` and ``coverage``
(also per request: ``?coverage=1``; see
:func:`celery_heartbeat.health.check_workers`). Only GET and HEAD are
answered. Needs ``pip install 'celery-heartbeat[django]'``.
"""

from __future__ import annotations

from typing import Any

from celery_heartbeat.health.web import (
    CONTENT_TYPE,
    HEADERS,
    Answer,
    ProbeOptions,
    missing_extra,
    queue_answer,
    workers_answer,
)

try:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.http import HttpResponse, HttpResponseNotAllowed
    from django.urls import path
    from django.utils.module_loading import import_string
except ImportError as exc:  # pragma: no cover - exercised in a test that hides django
    raise missing_extra("django", "Django", "django") from exc

__all__ = ["celery_health", "celery_queue_health", "urlpatterns"]

#: The Django setting naming the Celery app (a dotted path or the app object).
APP_SETTING = "CELERY_HEARTBEAT_APP"


def celery_health(request: Any, *, app: Any = None, **options: Any) -> Any:
    """``GET /health/celery``: are enough Celery workers alive?"""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return _response(workers_answer(_celery_app(app), ProbeOptions(**options), request.GET.get("coverage")))


def celery_queue_health(request: Any, queue_name: str, *, app: Any = None, **options: Any) -> Any:
    """``GET /health/celery/queue/<queue_name>?threshold=``: is this queue's backlog within bounds?"""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    threshold = request.GET.get("threshold")
    return _response(queue_answer(_celery_app(app), ProbeOptions(**options), queue_name, threshold))


urlpatterns = [
    path("health/celery", celery_health, name="celery_health"),
    path("health/celery/queue/<str:queue_name>", celery_queue_health, name="celery_queue_health"),
]


def _celery_app(app: Any) -> Any:
    """The Celery app to probe: the view argument, else the setting, else ``celery.current_app``."""
    source = "the view's app argument"
    if app is None:
        app, source = getattr(settings, APP_SETTING, None), f"settings.{APP_SETTING}"
    if app is None:
        from celery import current_app

        return current_app._get_current_object()
    if isinstance(app, str):
        try:
            return import_string(app)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{source} = {app!r} does not name a Celery app (a dotted path such as 'proj.celery.app'): {exc}"
            ) from exc
    return app


def _response(answer: Answer) -> Any:
    response = HttpResponse(answer.body, status=answer.status_code, content_type=CONTENT_TYPE)
    for name, value in HEADERS.items():
        response[name] = value
    return response
