"""URLs: the health views under /health/celery next to the project's own."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("celery_heartbeat.contrib.django")),  # /health/celery, /health/celery/queue/<name>
]
