"""A Django project with a Celery worker, heartbeat pings and health endpoints.

Settings come from environment variables (monitor URLs are secrets; an unset
one simply disables its monitor)::

    export DJANGO_SECRET_KEY=...
    export CELERY_BROKER_URL=redis://localhost:6379/0
    export HEARTBEAT_NIGHTLY_REPORT_URL=https://hc-ping.com/<uuid>
    export HEARTBEAT_BEAT_URL=https://hc-ping.com/<another-uuid>

Run, from ``examples/django_project`` (Redis needs ``pip install 'celery[redis]'``)::

    celery -A proj worker --loglevel=INFO
    celery -A proj beat
    python manage.py runserver

Then ``GET /health/celery`` and ``GET /health/celery/queue/celery?threshold=100``
answer 200 when healthy and 503 when not.
"""

from __future__ import annotations

# Load the Celery app whenever Django starts, so @shared_task uses it.
from proj.celery import app as celery_app

__all__ = ("celery_app",)
