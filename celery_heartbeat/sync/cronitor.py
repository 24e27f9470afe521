"""Cronitor's monitor API.

Requests (HTTP basic auth, user ``<heartbeat_cronitor_api_key>``, empty password):

- ``GET {api_url}/api/monitors?page=N``   list monitors, page by page
- ``PUT {api_url}/api/monitors``          create or update, body ``{"monitors": [monitor]}``
- ``DELETE {api_url}/api/monitors/<key>`` prune

Owned fields of a monitor: ``key``, ``name``, ``type: "job"``, ``schedule`` (a
5-field cron, or ``"every N seconds|minutes|hours|days"`` for an interval),
``timezone`` (cron only), ``grace_seconds`` and ``note``; ``tags`` keeps the
user's tags and adds the marker. Notification lists are left to the user.
"""

from __future__ import annotations

import math
from typing import Any

from celery_heartbeat._exceptions import ProviderError
from celery_heartbeat.sync.client import ApiClient
from celery_heartbeat.sync.provider import Diff, Limits, MonitorSpec, Remote, diff_fields

MAX_PAGES = 200


def every(seconds: float) -> str:
    """An interval the way Cronitor reads it: the largest whole unit."""
    whole = math.ceil(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if whole % size == 0:
            count = whole // size
            return f"every {count} {unit}{'' if count == 1 else 's'}"
    return f"every {whole} second{'' if whole == 1 else 's'}"


class CronitorApi:
    name = "Cronitor"
    # Cronitor documents no sub-minute job schedules: a minute is the shortest period we send.
    limits = Limits(min_period=60, max_period=366 * 86400, min_grace=0, max_grace=366 * 86400, max_cron_length=200)

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def desired(self, spec: MonitorSpec) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "key": spec.key,
            "name": spec.name,
            "type": "job",
            "grace_seconds": math.ceil(spec.grace),
            "note": spec.description,
        }
        if spec.expected.kind == "cron":
            fields["schedule"] = spec.expected.cron
            fields["timezone"] = spec.expected.tz
        else:
            fields["schedule"] = every(spec.expected.period or 0)
        return fields

    def diff(self, desired: dict[str, Any], remote: Remote, marker: str) -> Diff:
        names = tuple(
            name for name in ("name", "type", "schedule", "timezone", "grace_seconds", "note") if name in desired
        )
        out = diff_fields(desired, remote, names)
        if marker not in remote.tags:
            out.append(("tags", list(remote.tags), [*remote.tags, marker]))
        return out

    def fetch(self) -> list[Remote]:
        out: list[Remote] = []
        for page in range(1, MAX_PAGES + 1):
            data = self.client.request("GET", "/api/monitors", params={"page": page})
            monitors = data.get("monitors") if isinstance(data, dict) else None
            if not isinstance(monitors, list):
                raise ProviderError("GET /api/monitors: the answer has no 'monitors' list")
            for monitor in monitors:
                if isinstance(monitor, dict) and monitor.get("key"):
                    tags = tuple(str(t) for t in monitor.get("tags") or ())
                    out.append(Remote(key=str(monitor["key"]), ident=str(monitor["key"]), fields=monitor, tags=tags))
            total = data.get("total_monitor_count") if isinstance(data, dict) else None
            if not monitors or (isinstance(total, int) and len(out) >= total):
                break
        return out

    def create(self, desired: dict[str, Any], marker: str) -> None:
        self.client.request("PUT", "/api/monitors", body={"monitors": [{**desired, "tags": [marker]}]})

    def update(self, remote: Remote, desired: dict[str, Any], marker: str) -> None:
        tags = [t for t in remote.tags if t != marker] + [marker]
        self.client.request("PUT", "/api/monitors", body={"monitors": [{**desired, "tags": tags}]})

    def delete(self, remote: Remote) -> None:
        self.client.request("DELETE", f"/api/monitors/{remote.ident}")

    def close(self) -> None:
        self.client.close()
