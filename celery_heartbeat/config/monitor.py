"""A monitor: where one task's (or canvas's) heartbeat goes, and which signals it wants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat._redact import redact
from celery_heartbeat.config import checks
from celery_heartbeat.config.providers import PROVIDERS, SUPPORTED_KINDS, Kind, Provider, detect_provider

MonitorValue = Union[str, Mapping[str, object], None]
"""What users write for a monitor: a URL, a monitor dict, or None / "" for "disabled"."""

MONITOR_KEYS = frozenset({"url", "provider", "start", "failure"})


@dataclass(frozen=True)
class Monitor:
    """A resolved monitor. `start`/`failure` None means "follow the app-wide setting"."""

    url: str
    provider: Provider
    start: bool | None = None
    failure: bool | None = None

    def supports(self, kind: Kind) -> bool:
        """Whether the provider has this signal at all (generic monitors only know success)."""
        return kind in SUPPORTED_KINDS[self.provider]

    def __repr__(self) -> str:
        return (
            f"Monitor(url={redact(self.url)!r}, provider={self.provider!r}, start={self.start}, failure={self.failure})"
        )


def check_url(key: str, url: object) -> str:
    """Kept for the modules that check a bare URL: see `config.checks.url`."""
    return checks.url(key, url)


def parse_monitor(key: str, spec: MonitorValue) -> Monitor | None:
    """Validate one monitor value; None / "" (an unset environment variable) disables it quietly."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        url = checks.url(key, spec)
        return Monitor(url=url, provider=detect_provider(url))
    if not isinstance(spec, Mapping):
        raise ConfigurationError(key, spec, "expected a URL string, a monitor dict or None")
    unknown = sorted(str(k) for k in spec if k not in MONITOR_KEYS)
    if unknown:
        raise ConfigurationError(key, spec, f"unknown monitor key(s) {unknown}; allowed: {sorted(MONITOR_KEYS)}")
    raw_url = spec.get("url")
    if raw_url is None or raw_url == "":
        return None
    url = checks.url(f"{key}['url']", raw_url)
    provider = spec.get("provider")
    if provider is None:
        provider = detect_provider(url)
    elif provider not in PROVIDERS:
        raise ConfigurationError(f"{key}['provider']", provider, f"expected one of {list(PROVIDERS)}")
    flags: dict[str, bool | None] = {}
    for flag in ("start", "failure"):
        value = spec.get(flag)
        if value is not None and not isinstance(value, bool):
            raise ConfigurationError(f"{key}[{flag!r}]", value, "expected True, False or None")
        flags[flag] = value
    return Monitor(url=url, provider=provider, start=flags["start"], failure=flags["failure"])
