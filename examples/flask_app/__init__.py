"""A Flask app with a Celery worker, heartbeat pings and health endpoints.

Settings come from environment variables (monitor URLs are secrets; an unset
one simply disables its monitor)::

    export CELERY_BROKER_URL=redis://localhost:6379/0
    export HEARTBEAT_NIGHTLY_REPORT_URL=https://hc-ping.com/<uuid>
    export HEARTBEAT_BEAT_URL=https://hc-ping.com/<another-uuid>

Run, from the ``examples`` directory (Redis needs ``pip install 'celery[redis]'``)::

    celery -A flask_app.worker worker --loglevel=INFO
    celery -A flask_app.worker beat
    flask --app flask_app.web run

Then ``GET /health/celery`` and ``GET /health/celery/queue/celery?threshold=100``
answer 200 when healthy and 503 when not.
"""
