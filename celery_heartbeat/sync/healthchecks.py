"""Healthchecks (hosted or self-hosted) Management API v3.

Requests (header ``X-Api-Key: <heartbeat_healthchecks_api_key>``, a read-write key):

- ``GET  {api_url}/api/v3/checks/``           list the project's checks
- ``POST {api_url}/api/v3/checks/``           create: the owned fields below plus
  ``tags`` (our marker), ``channels: "*"`` (alert through every integration of the
  project, as a check made in the web UI does) and ``unique: ["slug"]`` (an upsert,
  so a concurrent sync never makes a duplicate)
- ``POST {api_url}/api/v3/checks/<uuid>``     update the owned fields; ``tags`` keeps
  the user's own tags and adds the marker
- ``DELETE {api_url}/api/v3/checks/<uuid>``   prune

Owned fields: ``name``, ``slug``, ``desc``, ``grace`` (seconds), and either
``schedule`` + ``tz`` (a cron check) or ``timeout`` (a simple check, seconds).
Integrations, keywords and methods are left to the user.
"""

from __future__ import annotations

import math
from typing import Any

from celery_heartbeat._exceptions import ProviderError
from celery_heartbeat.sync.client import ApiClient
from celery_heartbeat.sync.provider import Diff, Limits, MonitorSpec, Remote, diff_fields

YEAR = 31_536_000


class HealthchecksApi:
    name = "Healthchecks"
    limits = Limits(min_period=60, max_period=YEAR, min_grace=60, max_grace=YEAR, max_cron_length=100)

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def desired(self, spec: MonitorSpec) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "name": spec.name[:100],
            "slug": spec.key,
            "desc": spec.description,
            "grace": math.ceil(spec.grace),
        }
        if spec.expected.kind == "cron":
            fields["schedule"] = spec.expected.cron
            fields["tz"] = spec.expected.tz
        else:
            fields["timeout"] = math.ceil(spec.expected.period or 0)
        return fields

    def diff(self, desired: dict[str, Any], remote: Remote, marker: str) -> Diff:
        out = diff_fields(desired, remote, ("name", "slug", "desc", "grace"))
        has = remote.fields
        if "schedule" in desired:
            if has.get("schedule") != desired["schedule"]:
                old = has.get("schedule") if "schedule" in has else f"(period {has.get('timeout')}s)"
                out.append(("schedule", old, desired["schedule"]))
            if has.get("tz") != desired["tz"]:
                out.append(("tz", has.get("tz"), desired["tz"]))
        elif has.get("timeout") != desired["timeout"] or "schedule" in has:
            old = has.get("timeout") if "schedule" not in has else f"(cron {has.get('schedule')})"
            out.append(("timeout", old, desired["timeout"]))
        if marker not in remote.tags:
            out.append(("tags", " ".join(remote.tags), " ".join([*remote.tags, marker])))
        return out

    def fetch(self) -> list[Remote]:
        data = self.client.request("GET", "/api/v3/checks/")
        checks = data.get("checks") if isinstance(data, dict) else None
        if not isinstance(checks, list):
            raise ProviderError("GET /api/v3/checks/: the answer has no 'checks' list")
        out = []
        for check in checks:
            if not isinstance(check, dict) or not check.get("slug"):
                continue
            ident = check.get("uuid") or str(check.get("update_url") or "").rstrip("/").rsplit("/", 1)[-1]
            tags = tuple(str(check.get("tags") or "").split())
            out.append(Remote(key=str(check["slug"]), ident=str(ident or ""), fields=check, tags=tags))
        return out

    def create(self, desired: dict[str, Any], marker: str) -> None:
        body = {**desired, "tags": marker, "channels": "*", "unique": ["slug"]}
        self.client.request("POST", "/api/v3/checks/", body=body)

    def update(self, remote: Remote, desired: dict[str, Any], marker: str) -> None:
        tags = [t for t in remote.tags if t != marker] + [marker]
        self.client.request("POST", f"/api/v3/checks/{self._ident(remote)}", body={**desired, "tags": " ".join(tags)})

    def delete(self, remote: Remote) -> None:
        self.client.request("DELETE", f"/api/v3/checks/{self._ident(remote)}")

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def _ident(remote: Remote) -> str:
        if not remote.ident:
            raise ProviderError(f"check {remote.key!r} has no UUID in the answer: is the API key read-only?")
        return remote.ident
