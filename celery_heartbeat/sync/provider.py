"""The provider side of `heartbeat sync`: a small interface each management API implements.

A provider turns a provider-neutral `MonitorSpec` into the fields it stores,
lists what it has, says how a stored monitor differs, and creates, updates or
deletes one. The sync logic (what to create, update or prune, dry runs,
warnings) lives in `celery_heartbeat.sync` and is shared by every provider, so
adding Better Stack or another service means one small module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from celery_heartbeat.beat.cron import Expected

Diff = list[tuple[str, Any, Any]]
"""(field, value the provider has, value it should have)."""


@dataclass(frozen=True)
class MonitorSpec:
    """What one beat entry's monitor should look like, whatever the provider."""

    key: str  # slug (Healthchecks) or monitor key (Cronitor): what the ping URL ends with
    name: str
    entry: str
    task: str
    expected: Expected
    grace: float
    marker: str  # the tag that says "managed by this project"
    description: str


@dataclass(frozen=True)
class Limits:
    """What the provider accepts; the sync clamps (with a warning) or refuses outside it."""

    min_period: float
    max_period: float
    min_grace: float
    max_grace: float
    max_cron_length: int = 100


@dataclass(frozen=True)
class Remote:
    """A monitor as the provider has it."""

    key: str
    ident: str  # what its URLs are addressed by (a UUID on Healthchecks, the key on Cronitor)
    fields: Mapping[str, Any]
    tags: tuple[str, ...]

    def owners(self, prefix: str) -> list[str]:
        return [tag for tag in self.tags if tag.startswith(prefix)]


class ManagementApi(Protocol):
    """One provider's management API."""

    name: str
    limits: Limits

    def desired(self, spec: MonitorSpec) -> dict[str, Any]:
        """The fields this library owns on the provider, as the provider would read them back."""
        ...

    def diff(self, desired: dict[str, Any], remote: Remote, marker: str) -> Diff: ...

    def fetch(self) -> list[Remote]: ...

    def create(self, desired: dict[str, Any], marker: str) -> None: ...

    def update(self, remote: Remote, desired: dict[str, Any], marker: str) -> None: ...

    def delete(self, remote: Remote) -> None: ...

    def close(self) -> None: ...


def diff_fields(desired: Mapping[str, Any], remote: Remote, names: tuple[str, ...]) -> Diff:
    return [
        (name, remote.fields.get(name), desired[name]) for name in names if remote.fields.get(name) != desired[name]
    ]
