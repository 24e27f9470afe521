"""Health checks for HTTP probes: are workers there, and is a queue keeping up?

::

    from celery_heartbeat.health import check_queue, check_workers

    report = check_workers(app, timeout=3.0, min_workers=1)
    report.ok, report.status, report.http_status, report.to_json()

The checks live in :mod:`celery_heartbeat.health.checks`, the broker access
behind them in ``broker``, and what the web adapters share in ``web``.
"""

from celery_heartbeat.health.checks import HealthReport, HealthStatus, check_queue, check_workers

__all__ = ["HealthReport", "HealthStatus", "check_queue", "check_workers"]
