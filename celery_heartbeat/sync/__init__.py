"""Monitors as code: push every beat entry's expected schedule to the monitoring provider.

::

    from celery_heartbeat.sync import sync_monitors

    result = sync_monitors(app, dry_run=True)
    print(result.format()); assert result.ok

The engine (plan, diff, apply) is :mod:`celery_heartbeat.sync.engine`; one
HTTP client (``client``) serves every provider's management API
(``healthchecks``, ``cronitor``), each behind the interface in ``provider``;
``command`` is ``celery -A proj heartbeat sync``.
"""

from celery_heartbeat.sync.engine import Change, SyncResult, sync_monitors

__all__ = ["Change", "SyncResult", "sync_monitors"]
