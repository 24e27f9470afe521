"""Wire formats: what start, success and failure mean for each monitoring service.

Each provider turns (monitor URL, kind, run id, detail) into one HTTP request.
A ping never carries task arguments or results; a failure may carry the
exception's type name, which is the most a monitor can show without leaking data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from celery_heartbeat._redact import redact

Provider = Literal["healthchecks", "cronitor", "betterstack", "uptime_kuma", "deadmanssnitch", "generic"]
Kind = Literal["start", "success", "failure"]

PROVIDERS: tuple[Provider, ...] = (
    "healthchecks",
    "cronitor",
    "betterstack",
    "uptime_kuma",
    "deadmanssnitch",
    "generic",
)

# Which kinds each provider can express at all; the rest are never sent.
SUPPORTED_KINDS: dict[Provider, frozenset[Kind]] = {
    "healthchecks": frozenset({"start", "success", "failure"}),
    "cronitor": frozenset({"start", "success", "failure"}),
    "betterstack": frozenset({"success", "failure"}),
    "uptime_kuma": frozenset({"success", "failure"}),
    "deadmanssnitch": frozenset({"success", "failure"}),
    "generic": frozenset({"success"}),
}

_HOSTS: dict[str, Provider] = {
    "hc-ping.com": "healthchecks",
    "cronitor.link": "cronitor",
    "cronitor.io": "cronitor",
    "uptime.betterstack.com": "betterstack",
    "betteruptime.com": "betterstack",
    "nosnch.in": "deadmanssnitch",
}


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request, ready for the transport."""

    method: str
    url: str
    body: bytes | None = None

    def __repr__(self) -> str:
        return f"WireRequest({self.method} {redact(self.url)}, body={self.body!r})"


def detect_provider(url: str) -> Provider:
    """Guess the provider from the host (or Uptime Kuma's push path); self-hosted needs `provider`."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for suffix, provider in _HOSTS.items():
        if host == suffix or host.endswith("." + suffix):
            return provider
    if "/api/push/" in parts.path:
        return "uptime_kuma"
    return "generic"


def _with_path(url: str, suffix: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def _with_query(url: str, params: dict[str, str], drop: tuple[str, ...] = ()) -> str:
    """Set query parameters, keeping the user's own ones (except those we own)."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params and k not in drop]
    pairs.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(pairs)))


def healthchecks_rid(run_id: str) -> str:
    """Healthchecks wants a UUID run id; Celery ids usually are, custom ones are mapped stably."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, run_id))


def build_request(
    provider: Provider,
    url: str,
    kind: Kind,
    *,
    run_id: str | None = None,
    detail: str | None = None,
    stamp: float | None = None,
) -> WireRequest | None:
    """The request for one ping, or None when the provider has no such signal.

    `stamp` is the event's time (epoch seconds): Cronitor files the ping at that time,
    so a ping delivered late (after an outage) still lands where its event happened.
    """
    if kind not in SUPPORTED_KINDS[provider]:
        return None
    if provider == "healthchecks":
        target = {"start": "/start", "success": "", "failure": "/fail"}[kind]
        out = _with_path(url, target)
        if run_id:
            out = _with_query(out, {"rid": healthchecks_rid(run_id)})
        if kind == "failure" and detail:
            return WireRequest("POST", out, detail.encode())
        return WireRequest("GET", out)
    if provider == "cronitor":
        state = {"start": "run", "success": "complete", "failure": "fail"}[kind]
        params = {"state": state}
        if run_id:
            params["series"] = run_id
        if kind == "failure" and detail:
            params["message"] = detail
        if stamp is not None:
            params["stamp"] = f"{stamp:.3f}"
        return WireRequest("GET", _with_query(url, params))
    if provider == "betterstack":
        return WireRequest("GET", url if kind == "success" else _with_path(url, "/fail"))
    if provider == "uptime_kuma":
        params = {"status": "up", "msg": "OK"} if kind == "success" else {"status": "down", "msg": detail or "failed"}
        return WireRequest("GET", _with_query(url, params, drop=("ping",)))
    if provider == "deadmanssnitch":
        if kind == "success":
            return WireRequest("GET", url)
        return WireRequest("GET", _with_query(url, {"s": "1", "m": detail or "failed"}))
    return WireRequest("GET", url)
