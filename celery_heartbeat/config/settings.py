"""Settings: every `heartbeat_*` setting declared once, with its default and its checker.

`Settings` is the one place a setting is defined: adding a field (with
`field(default=..., metadata=check(checker))`) makes it known, parsed, validated, and accepted as
an `install()` keyword; everything else (unknown-key detection, the CLI, the
docs test) reads the list from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat._redact import Secret, redact_value
from celery_heartbeat.config import auto_settings as auto
from celery_heartbeat.config import checks
from celery_heartbeat.config.monitor import Monitor, parse_monitor
from celery_heartbeat.config.registry import check_name

PREFIX = "heartbeat_"

Checker = Callable[[str, Any], Any]


def check(checker: Checker) -> dict[str, Checker]:
    """A Settings field's metadata: the checker its raw value goes through."""
    return {"check": checker}


def parse_urls(key: str, value: object) -> dict[str, Monitor]:
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


def _beat_url(key: str, value: object) -> object:
    # A URL, a monitor dict or a heartbeat_urls name: names are resolved once the urls are known.
    if value is None or value == "":
        return None
    if isinstance(value, str) and "://" not in value:
        return check_name(key, value)
    return parse_monitor(key, value)  # type: ignore[arg-type]


def _positive(key: str, value: object) -> float:
    return checks.seconds(key, value)


def _non_negative(key: str, value: object) -> float:
    return checks.seconds(key, value, positive=False)


def _attempts(key: str, value: object) -> int:
    return checks.integer(key, value, minimum=1)


def _probe_dir(key: str, value: object) -> str | None:
    if value is None or value == "":
        return None  # an unset environment variable
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(key, value, "expected a directory path")
    return value.strip()


def _probe_port(key: str, value: object) -> int | None:
    port = checks.optional_integer(key, value, minimum=1)
    if port is not None and port > 65535:
        raise ConfigurationError(key, value, "expected a TCP port 1..65535")
    return port


@dataclass(frozen=True)
class Settings:
    """Every `heartbeat_*` setting, validated. Field names are the setting names without the prefix."""

    urls: Mapping[str, Monitor] = field(default_factory=dict, metadata=check(parse_urls))
    send_start: bool = field(default=False, metadata=check(checks.boolean))
    send_failure: bool = field(default=True, metadata=check(checks.boolean))
    timeout: float = field(default=5.0, metadata=check(_positive))
    max_attempts: int = field(default=3, metadata=check(_attempts))
    coalesce_seconds: float = field(default=10.0, metadata=check(_non_negative))
    shutdown_timeout: float = field(default=5.0, metadata=check(_non_negative))
    enabled: bool = field(default=True, metadata=check(checks.boolean))
    #: A URL, monitor dict or heartbeat_urls name, resolved to its Monitor.
    beat_url: Monitor | None = field(default=None, metadata=check(_beat_url))
    beat_every: float = field(default=60.0, metadata=check(_positive))
    max_age: float = field(default=600.0, metadata=check(_positive))
    backoff_max: float = field(default=30.0, metadata=check(_positive))
    # Monitors as code (beat entries monitored and synced to a provider): see auto_settings.py.
    healthchecks_ping_key: Secret | None = field(default=None, metadata=check(checks.secret))
    healthchecks_api_key: Secret | None = field(default=None, metadata=check(checks.secret))
    healthchecks_ping_url: str = field(default="https://hc-ping.com", metadata=check(auto.base_url))
    healthchecks_api_url: str = field(default="https://healthchecks.io", metadata=check(auto.base_url))
    cronitor_api_key: Secret | None = field(default=None, metadata=check(checks.secret))
    cronitor_ping_key: Secret | None = field(default=None, metadata=check(checks.secret))
    cronitor_ping_url: str = field(default="https://cronitor.link", metadata=check(auto.base_url))
    cronitor_api_url: str = field(default="https://cronitor.io", metadata=check(auto.base_url))
    auto_monitor: bool = field(default=True, metadata=check(checks.boolean))
    beat_entries: Mapping[str, auto.EntryOptions] = field(default_factory=dict, metadata=check(auto.beat_entries))
    grace: float = field(default=300.0, metadata=check(_positive))
    monitor_prefix: str = field(default="", metadata=check(auto.monitor_prefix))
    sync_on_beat_start: bool = field(default=False, metadata=check(checks.boolean))
    #: With beat liveness: alarm when two beats dispatch one schedule (beat/duplicates.py).
    detect_duplicate_beats: bool = field(default=True, metadata=check(checks.boolean))
    # Container probes (celery_heartbeat/probe/): where the state files go, and the worker's HTTP port.
    probe_dir: str | None = field(default=None, metadata=check(_probe_dir))
    probe_port: int | None = field(default=None, metadata=check(_probe_port))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={redact_value(getattr(self, f.name))}" for f in fields(self))
        return f"Settings({shown})"

    def changed(self, other: Settings) -> list[str]:
        """The setting names (with prefix) whose values differ: keys only, never values."""
        return [PREFIX + f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


DEFAULTS = Settings()
NAMES = tuple(f.name for f in fields(Settings))
KNOWN = tuple(PREFIX + name for name in NAMES)


def parse_settings(raw: Mapping[str, Any]) -> Settings:
    """Validate raw `heartbeat_*` values (absent keys take defaults) into Settings; the first problem raises."""
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = PREFIX + f.name
        if key in raw:
            checker: Checker = f.metadata["check"]
            values[f.name] = checker(key, raw[key])
    beat_url = values.get("beat_url")
    if isinstance(beat_url, str):  # a heartbeat_urls name
        monitor = values.get("urls", {}).get(beat_url)
        if monitor is None:
            raise ConfigurationError(
                PREFIX + "beat_url", beat_url, "not a URL, and no heartbeat_urls entry of that name"
            )
        values["beat_url"] = monitor
    auto.one_provider(
        PREFIX + "cronitor_api_key",
        values.get("healthchecks_ping_key") or values.get("healthchecks_api_key"),
        values.get("cronitor_api_key") or values.get("cronitor_ping_key"),
    )
    return Settings(**values)
