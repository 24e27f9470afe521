"""Checkers for the monitors-as-code settings: provider credentials, per-entry options, sync behaviour.

The settings themselves are declared in `config/settings.py` (one place); this
module holds what only they need: per-entry options and the slug rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat._redact import Secret
from celery_heartbeat.config import checks

SLUG_RE = re.compile(r"^[a-z0-9_-]{1,100}$")
PREFIX_RE = re.compile(r"^[a-z0-9_-]{0,40}$")
ENTRY_KEYS = frozenset({"enabled", "grace", "slug"})


@dataclass(frozen=True)
class EntryOptions:
    """Per beat entry (`heartbeat_beat_entries`): opt out, own grace, own slug."""

    enabled: bool = True
    grace: float | None = None
    slug: str | None = None


def base_url(key: str, value: object) -> str:
    return checks.url(key, value).rstrip("/")


def monitor_prefix(key: str, value: object) -> str:
    prefix = "" if value is None else value
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise ConfigurationError(key, prefix, "expected up to 40 of a-z, 0-9, '-', '_'")
    return prefix


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
    enabled = checks.boolean(f"{key}['enabled']", value.get("enabled", True))
    grace = value.get("grace")
    slug = value.get("slug")
    if slug is not None and (not isinstance(slug, str) or not SLUG_RE.match(slug)):
        raise ConfigurationError(f"{key}['slug']", slug, "expected 1-100 characters of a-z, 0-9, '-' or '_'")
    return EntryOptions(
        enabled=enabled,
        grace=None if grace is None else checks.seconds(f"{key}['grace']", grace),
        slug=slug,
    )


def beat_entries(key: str, value: object) -> Mapping[str, EntryOptions]:
    entries = {} if value is None else value
    if not isinstance(entries, Mapping):
        raise ConfigurationError(key, entries, "expected a mapping of beat entry name -> options")
    return {str(name): parse_entry(f"{key}[{name!r}]", option) for name, option in entries.items()}


def one_provider(key: str, healthchecks: Secret | None, cronitor: Secret | None) -> None:
    """Beat entries are monitored on one provider: keys of two is a mistake, not a choice."""
    if healthchecks and cronitor:
        raise ConfigurationError(
            key,
            cronitor,
            "Healthchecks keys are set too: beat entries are monitored on one provider, so set only one "
            "provider's keys",
        )
