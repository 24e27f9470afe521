"""A FastAPI service with a Celery worker, heartbeat pings and health endpoints.

Settings come from environment variables (monitor URLs are secrets; an unset
one simply disables its monitor)::

    export CELERY_BROKER_URL=redis://localhost:6379/0
    export HEARTBEAT_NIGHTLY_REPORT_URL=https://hc-ping.com/<uuid>
    export HEARTBEAT_BEAT_URL=https://hc-ping.com/<another-uuid>

Run, from the ``examples`` directory (Redis needs ``pip install 'celery[redis]'``)::

    celery -A fastapi_app.worker worker --loglevel=INFO
    celery -A fastapi_app.worker beat
    uvicorn fastapi_app.main:app

Then ``GET /health/celery`` (are workers there?) and
``GET /health/celery/queue/celery?threshold=100`` (is the queue keeping up?)
answer 200 when healthy and 503 when not.
"""
