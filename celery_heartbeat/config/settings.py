"""Settings: read once from `app.conf` (and install() keywords) into one frozen, validated object."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat.config.auto_settings import EntryOptions, parse_auto_settings
from celery_heartbeat.config.monitor import Monitor, check_url, parse_monitor

PREFIX = "heartbeat_"


@dataclass(frozen=True)
class Settings:
    """Every `heartbeat_*` setting, validated. Field names are the setting names without the prefix."""

    urls: Mapping[str, Monitor] = field(default_factory=dict)
    send_start: bool = False
    send_failure: bool = True
    timeout: float = 5.0
    max_attempts: int = 3
    coalesce_seconds: float = 10.0
    shutdown_timeout: float = 5.0
    enabled: bool = True
    beat_url: str | None = None
    beat_every: float = 60.0
    max_age: float = 600.0
    backoff_max: float = 30.0
    # Monitors as code (beat entries monitored and synced to a provider): see _auto_settings.py.
    healthchecks_ping_key: str | None = field(default=None, repr=False)  # a secret
    healthchecks_api_key: str | None = field(default=None, repr=False)  # a secret
    healthchecks_ping_url: str = "https://hc-ping.com"
    healthchecks_api_url: str = "https://healthchecks.io"
    cronitor_api_key: str | None = field(default=None, repr=False)  # a secret
    cronitor_ping_key: str | None = field(default=None, repr=False)  # a secret
    cronitor_ping_url: str = "https://cronitor.link"
    cronitor_api_url: str = "https://cronitor.io"
    auto_monitor: bool = True
    beat_entries: Mapping[str, EntryOptions] = field(default_factory=dict)
    grace: float = 300.0
    monitor_prefix: str = ""
    sync_on_beat_start: bool = False


_DEFAULTS = Settings()
KNOWN = tuple(f"{PREFIX}{name}" for name in Settings.__dataclass_fields__)


def _bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ConfigurationError(key, value, "expected a boolean")


def _number(key: str, value: object, *, minimum: float, allow_equal: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigurationError(key, value, "expected a number of seconds")
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(key, value, "expected a number of seconds") from None
    if math.isnan(number) or math.isinf(number) or number < minimum or (number == minimum and not allow_equal):
        bound = f">= {minimum:g}" if allow_equal else f"> {minimum:g}"
        raise ConfigurationError(key, value, f"expected a finite number {bound}")
    return number


def _int(key: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigurationError(key, value, f"expected an integer >= {minimum}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(key, value, f"expected an integer >= {minimum}") from None
    if number < minimum:
        raise ConfigurationError(key, value, f"expected an integer >= {minimum}")
    return number


def parse_urls(value: object, key: str = "heartbeat_urls") -> dict[str, Monitor]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, value, "expected a mapping of task name or glob -> URL or monitor dict")
    out: dict[str, Monitor] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(key, name, "keys must be non-empty task names or globs")
        monitor = parse_monitor(f"{key}[{name!r}]", spec)
        if monitor is not None:
            out[name] = monitor
    return out


def parse_settings(raw: Mapping[str, Any]) -> Settings:
    """Validate raw `heartbeat_*` values (absent keys take defaults) into Settings.

    Every key is checked before anything is raised, but the first problem found
    is what is reported, so the message stays short and names one key.
    """
    values: dict[str, Any] = {}

    def get(name: str) -> Any:
        return raw.get(PREFIX + name, getattr(_DEFAULTS, name))

    values["urls"] = parse_urls(raw.get(PREFIX + "urls"))
    for name in ("send_start", "send_failure", "enabled"):
        values[name] = _bool(PREFIX + name, get(name))
    values["timeout"] = _number(PREFIX + "timeout", get("timeout"), minimum=0, allow_equal=False)
    values["max_attempts"] = _int(PREFIX + "max_attempts", get("max_attempts"), minimum=1)
    values["coalesce_seconds"] = _number(PREFIX + "coalesce_seconds", get("coalesce_seconds"), minimum=0)
    values["shutdown_timeout"] = _number(PREFIX + "shutdown_timeout", get("shutdown_timeout"), minimum=0)
    values["beat_every"] = _number(PREFIX + "beat_every", get("beat_every"), minimum=0, allow_equal=False)
    values["max_age"] = _number(PREFIX + "max_age", get("max_age"), minimum=0, allow_equal=False)
    values["backoff_max"] = _number(PREFIX + "backoff_max", get("backoff_max"), minimum=0, allow_equal=False)
    beat_url = get("beat_url")
    values["beat_url"] = None if beat_url in (None, "") else check_url(PREFIX + "beat_url", beat_url)
    values.update(parse_auto_settings(get))
    return Settings(**values)


def settings_from_app(conf: Mapping[str, Any], overrides: Mapping[str, Any]) -> Settings:
    """app.conf values, then install() keywords (given without the `heartbeat_` prefix)."""
    raw: dict[str, Any] = {}
    for key in KNOWN:
        value = conf.get(key)
        if value is not None or key == PREFIX + "beat_url":
            raw[key] = value
    for name, value in overrides.items():
        key = name if name.startswith(PREFIX) else PREFIX + name
        if key not in KNOWN:
            raise ConfigurationError(name, value, f"unknown setting; known: {sorted(KNOWN)}")
        raw[key] = value
    return parse_settings(raw)
