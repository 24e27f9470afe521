"""Settings for monitors-as-code: provider credentials, per-entry options, sync behaviour.

Kept apart from `_settings.py` so the core settings stay small; `parse_auto_settings`
returns the values that `Settings` stores under the same names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat.config.monitor import check_url

PREFIX = "heartbeat_"
SLUG_RE = re.compile(r"^[a-z0-9_-]{1,100}$")
PREFIX_RE = re.compile(r"^[a-z0-9_-]{0,40}$")
ENTRY_KEYS = frozenset({"enabled", "grace", "slug"})

SECRETS = frozenset({"healthchecks_ping_key", "healthchecks_api_key", "cronitor_api_key", "cronitor_ping_key"})


@dataclass(frozen=True)
class EntryOptions:
    """Per beat entry (`heartbeat_beat_entries`): opt out, own grace, own slug."""

    enabled: bool = True
    grace: float | None = None
    slug: str | None = None


class _Secret:
    """Shows a credential in an error message as its first 4 characters only."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value[:4] + "…")


def _secret(key: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() or c == "/" for c in value.strip()):
        shown = _Secret(value) if isinstance(value, str) else type(value).__name__
        raise ConfigurationError(key, shown, "expected a key string without spaces or '/' (or None)")
    return value.strip()


def _base_url(key: str, value: object) -> str:
    return check_url(key, value).rstrip("/")


def _flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ConfigurationError(key, value, "expected a boolean")


def _seconds(key: str, value: object) -> float:
    try:
        number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float, str)) else None
    except ValueError:
        number = None
    if number is None or math.isnan(number) or math.isinf(number) or number <= 0:
        raise ConfigurationError(key, value, "expected a finite number of seconds > 0")
    return number


def parse_entry(key: str, value: object) -> EntryOptions:
    """One `heartbeat_beat_entries` value: False/None opts out, True keeps defaults, a dict sets options."""
    if value is None or value is False:
        return EntryOptions(enabled=False)
    if value is True:
        return EntryOptions()
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, value, "expected False (opt out), True, or a dict with grace/slug/enabled")
    unknown = sorted(str(k) for k in value if k not in ENTRY_KEYS)
    if unknown:
        raise ConfigurationError(key, value, f"unknown key(s) {unknown}; allowed: {sorted(ENTRY_KEYS)}")
    enabled = _flag(f"{key}['enabled']", value.get("enabled", True))
    grace = value.get("grace")
    slug = value.get("slug")
    if slug is not None and (not isinstance(slug, str) or not SLUG_RE.match(slug)):
        raise ConfigurationError(f"{key}['slug']", slug, "expected 1-100 characters of a-z, 0-9, '-' or '_'")
    return EntryOptions(
        enabled=enabled,
        grace=None if grace is None else _seconds(f"{key}['grace']", grace),
        slug=slug,
    )


def parse_auto_settings(get: Callable[[str], Any]) -> dict[str, Any]:
    """Validate the monitors-as-code settings; `get(name)` returns the raw value or its default."""
    out: dict[str, Any] = {}
    for name in SECRETS:
        out[name] = _secret(PREFIX + name, get(name))
    for name in ("healthchecks_ping_url", "healthchecks_api_url", "cronitor_ping_url", "cronitor_api_url"):
        out[name] = _base_url(PREFIX + name, get(name))
    for name in ("auto_monitor", "sync_on_beat_start"):
        out[name] = _flag(PREFIX + name, get(name))
    out["grace"] = _seconds(PREFIX + "grace", get("grace"))
    prefix = get("monitor_prefix")
    prefix = "" if prefix is None else prefix
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise ConfigurationError(PREFIX + "monitor_prefix", prefix, "expected up to 40 of a-z, 0-9, '-', '_'")
    out["monitor_prefix"] = prefix
    entries = get("beat_entries")
    if entries is None:
        entries = {}
    if not isinstance(entries, Mapping):
        raise ConfigurationError(PREFIX + "beat_entries", entries, "expected a mapping of beat entry name -> options")
    out["beat_entries"] = {
        str(name): parse_entry(f"{PREFIX}beat_entries[{name!r}]", value) for name, value in entries.items()
    }
    healthchecks = out["healthchecks_ping_key"] or out["healthchecks_api_key"]
    if healthchecks and (out["cronitor_api_key"] or out["cronitor_ping_key"]):
        raise ConfigurationError(
            PREFIX + "cronitor_api_key",
            _Secret(out["cronitor_api_key"] or out["cronitor_ping_key"]),
            "Healthchecks keys are set too: beat entries are monitored on one provider, so set only one "
            "provider's keys",
        )
    return out
