"""Monitors as code: push every beat entry's expected schedule to the monitoring provider.

    from celery_heartbeat.sync import sync_monitors

    result = sync_monitors(app)                  # create or update, idempotently
    result = sync_monitors(app, dry_run=True)    # only say what would change
    result = sync_monitors(app, prune=True)      # also delete monitors whose entry is gone
    print(result.format()); assert result.ok

Each beat entry becomes one monitor keyed by its slug: a crontab as a 5-field
cron in its time zone, an interval as a period, both with a grace time. What
cannot be expressed faithfully (solar schedules, day_of_month together with
day_of_week, periods beyond the provider's range) is reported by entry name and
left alone, never turned into a monitor that alerts at the wrong times. Only
monitors tagged with this project's marker are ever updated by name or pruned.
The same runs as ``celery -A proj heartbeat sync`` and, with
``heartbeat_sync_on_beat_start``, in the background when beat starts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from celery import Celery

from celery_heartbeat._exceptions import ProviderError, UnsupportedSchedule
from celery_heartbeat._state import registry_of, settings_of
from celery_heartbeat.beat.automonitor import MARKER_PREFIX, AutoEntry, marker_for, ping_url, plan_entries, provider_of
from celery_heartbeat.beat.cron import Expected, expected_for, format_seconds
from celery_heartbeat.beat.entries import read_entries
from celery_heartbeat.config.settings import Settings
from celery_heartbeat.sync.client import ApiClient, redact_urls
from celery_heartbeat.sync.cronitor import CronitorApi
from celery_heartbeat.sync.healthchecks import HealthchecksApi
from celery_heartbeat.sync.provider import Limits, ManagementApi, MonitorSpec

__all__ = ["Change", "SyncResult", "sync_monitors"]

logger = logging.getLogger("celery_heartbeat")

Action = Literal["create", "update", "unchanged", "delete", "stale", "skip", "conflict", "failed"]
BACKGROUND_BUDGET = 60.0
_SYMBOLS = {
    "create": "+",
    "update": "~",
    "unchanged": "=",
    "delete": "-",
    "stale": "?",
    "skip": "!",
    "conflict": "x",
    "failed": "x",
}
_SHOWN_ON_CREATE = ("schedule", "tz", "timezone", "timeout", "grace", "grace_seconds")


@dataclass(frozen=True)
class Change:
    """One line of the plan: what happens (or would happen) to one monitor."""

    action: Action
    key: str
    entry: str | None = None
    diff: tuple[tuple[str, Any, Any], ...] = ()
    note: str = ""

    def format(self, dry_run: bool = False) -> str:
        verb: str = self.action
        if dry_run and verb in ("create", "update", "delete"):
            verb = f"would {verb}"
        head = f"{_SYMBOLS[self.action]} {self.key}"
        if self.entry is not None and self.entry != self.key:
            head += f" (entry {self.entry!r})"
        parts = [f"{head}: {verb}"]
        if self.action == "create":
            shown = [f"{name}={new!r}" for name, _, new in self.diff if name in _SHOWN_ON_CREATE]
            parts.append(" ".join(shown))
        elif self.diff:
            parts.append("; ".join(_format_diff(name, old, new) for name, old, new in self.diff))
        if self.note:
            parts.append(self.note)
        return " - ".join(p for p in parts if p)


def _format_diff(name: str, old: Any, new: Any) -> str:
    if name in ("desc", "note"):
        return f"{name} changed"
    return f"{name}: {old!r} -> {new!r}"


@dataclass
class SyncResult:
    """What a sync did (or, with dry_run, would do); `ok` is False when anything failed."""

    provider: str | None = None
    dry_run: bool = False
    prune: bool = False
    allow_empty: bool = False
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action == action)

    def summary(self) -> str:
        verbs: tuple[tuple[Action, str], ...] = (
            ("create", "to create" if self.dry_run else "created"),
            ("update", "to update" if self.dry_run else "updated"),
            ("unchanged", "unchanged"),
            ("delete", "to delete" if self.dry_run else "deleted"),
            ("stale", "stale (kept without --prune)"),
            ("skip", "skipped"),
            ("conflict", "in conflict"),
            ("failed", "failed"),
        )
        counts = [f"{self.count(a)} {label}" for a, label in verbs if self.count(a) or a == "unchanged"]
        title = self.provider or "heartbeat sync"
        return f"{title}{' (dry run)' if self.dry_run else ''}: " + ", ".join(counts)

    def format(self) -> str:
        lines = [self.summary()]
        lines += [change.format(self.dry_run) for change in self.changes]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


def management_api(settings: Settings, deadline: float | None = None) -> ManagementApi | None:
    """The provider's management API client, or None when its API key is not set."""
    common: dict[str, Any] = {"timeout": settings.timeout, "attempts": settings.max_attempts, "deadline": deadline}
    provider = provider_of(settings)
    if provider == "healthchecks" and settings.healthchecks_api_key:
        key = settings.healthchecks_api_key.reveal()
        secrets = [key, settings.healthchecks_ping_key.reveal() if settings.healthchecks_ping_key else ""]
        client = ApiClient(settings.healthchecks_api_url, headers={"X-Api-Key": key}, secrets=secrets, **common)
        return HealthchecksApi(client)
    if provider == "cronitor" and settings.cronitor_api_key:
        key = settings.cronitor_api_key.reveal()
        secrets = [key, settings.cronitor_ping_key.reveal() if settings.cronitor_ping_key else ""]
        client = ApiClient(settings.cronitor_api_url, auth=(key, ""), secrets=secrets, **common)
        return CronitorApi(client)
    return None


def _fit(api: ManagementApi, auto: AutoEntry, expected: Expected, warnings: list[str]) -> tuple[Expected, float]:
    """Bring a period and grace within what the provider accepts, saying so; refuse what cannot fit."""
    limits: Limits = api.limits
    name = auto.entry.name
    if expected.kind == "interval":
        period = expected.period or 0.0
        if period > limits.max_period:
            raise UnsupportedSchedule(
                f"its period ({format_seconds(period)}) is longer than {api.name} accepts "
                f"({format_seconds(limits.max_period)})"
            )
        if period < limits.min_period:
            shortest = format_seconds(limits.min_period)
            warnings.append(
                f"beat entry {name!r} runs every {format_seconds(period)}, more often than the shortest period "
                f"{api.name} accepts ({shortest}): its monitor expects a ping at least every {shortest}"
            )
            expected = Expected(kind="interval", period=limits.min_period)
    elif len(expected.cron or "") > limits.max_cron_length:
        raise UnsupportedSchedule(
            f"its cron expression {expected.cron!r} is longer than {api.name} accepts ({limits.max_cron_length})"
        )
    grace = auto.grace
    if grace < limits.min_grace or grace > limits.max_grace:
        fitted = min(max(grace, limits.min_grace), limits.max_grace)
        warnings.append(
            f"beat entry {name!r}: grace {format_seconds(grace)} is outside what {api.name} accepts; "
            f"using {format_seconds(fitted)}"
        )
        grace = fitted
    return expected, grace


def _description(app: Celery, auto: AutoEntry) -> str:
    return (
        f"Managed by celery-heartbeat: beat entry '{auto.entry.name}' (task {auto.entry.task}) of Celery app "
        f"'{app.main}'. Its name, schedule, grace and this description are overwritten by `celery heartbeat sync`."
    )


def _import_tasks(app: Celery, result: SyncResult) -> None:
    """Import the project's task modules, so per-task `heartbeat=` options are seen (explicit wins)."""
    try:
        app.loader.import_default_modules()
    except Exception as exc:
        result.warnings.append(f"could not import the task modules ({type(exc).__name__}: {redact_urls(str(exc))})")


def sync_monitors(
    app: Celery,
    *,
    dry_run: bool = False,
    prune: bool = False,
    allow_empty: bool = False,
    deadline: float | None = None,
    import_tasks: bool = True,
) -> SyncResult:
    """Create or update each auto-monitored beat entry's monitor; with `prune`, delete the orphans.

    Idempotent: a second run changes nothing. `dry_run` only reads from the
    provider. `deadline` (a `time.monotonic()` value) bounds the whole run.
    Never raises for provider trouble: failures are in `result.errors`.

    A prune that would delete monitors while the schedule holds no entries at
    all (a settings module that failed to load, a django-celery-beat table not
    migrated yet) is refused with an error, unless `allow_empty=True`: it
    would delete every monitor this app owns, and their history with them.
    """
    result = SyncResult(dry_run=dry_run, prune=prune, allow_empty=allow_empty)
    settings = settings_of(app)
    provider = provider_of(settings)
    if provider is None:
        result.errors.append(
            "no provider keys: set heartbeat_healthchecks_ping_key and heartbeat_healthchecks_api_key, "
            "or heartbeat_cronitor_api_key"
        )
        return result
    api = management_api(settings, deadline)
    if api is None:
        result.provider = provider
        result.errors.append(f"no management API key: set heartbeat_{provider}_api_key (a read-write key)")
        return result
    result.provider = api.name
    try:
        _sync(app, settings, api, result, import_tasks)
    finally:
        api.close()
    return result


def _sync(app: Celery, settings: Settings, api: ManagementApi, result: SyncResult, import_tasks: bool) -> None:
    if import_tasks:
        _import_tasks(app, result)
    if provider_of(settings) == "healthchecks" and not settings.healthchecks_ping_key:
        result.warnings.append("heartbeat_healthchecks_ping_key is not set: workers cannot ping these checks")
    read = read_entries(app)
    result.warnings.extend(read.warnings)
    planned = plan_entries(app, settings, registry_of(app).resolve, read)
    marker = marker_for(app, settings)
    specs: list[MonitorSpec] = []
    in_use: set[str] = set()
    for auto in planned:
        name = auto.entry.name
        if auto.monitor is None:
            if auto.explicit is not None and auto.explicit.url == ping_url(settings, auto.key):
                in_use.add(auto.key)  # mapped by hand to the very URL auto-monitoring would use
            if auto.problem:
                result.warnings.append(f"beat entry {name!r} is not monitored: {auto.reason}")
            note = "not monitored (see warning)" if auto.problem else (auto.reason or "")
            result.changes.append(Change("skip", auto.key, name, note=note))
            continue
        in_use.add(auto.key)
        try:
            expected, grace = _fit(api, auto, expected_for(auto.entry.schedule, auto.entry.tz), result.warnings)
        except UnsupportedSchedule as exc:
            result.warnings.append(f"beat entry {name!r}: no monitor can be made for it: {exc}")
            result.changes.append(Change("skip", auto.key, name, note="its schedule cannot be expressed (see warning)"))
            continue
        spec = MonitorSpec(
            key=auto.key,
            name=f"{settings.monitor_prefix}{name}",
            entry=name,
            task=auto.entry.task,
            expected=expected,
            grace=grace,
            marker=marker,
            description=_description(app, auto),
        )
        specs.append(spec)
    try:
        remote = {r.key: r for r in api.fetch()}
    except ProviderError as exc:
        result.errors.append(str(exc))
        return
    for spec in specs:
        result.changes.append(_apply(api, spec, remote.get(spec.key), marker, result))
    orphans = [r for r in remote.values() if marker in r.tags and r.key not in in_use]
    refused = result.prune and bool(orphans) and not read.entries and not result.allow_empty
    if refused:
        why = "; ".join(read.warnings) or "beat_schedule is empty"
        result.errors.append(
            f"refusing to prune: the schedule has no entries ({why}), so --prune would delete all "
            f"{len(orphans)} monitor(s) this app owns, and their history. If the schedule is really empty, "
            "pass --allow-empty (allow_empty=True)."
        )
    for r in orphans:
        if refused:
            result.changes.append(Change("stale", r.key, note="kept: prune refused, the schedule has no entries"))
            continue
        if not result.prune:
            result.changes.append(Change("stale", r.key, note="no beat entry monitors it; --prune removes it"))
            continue
        change = Change("delete", r.key, note="no beat entry monitors it")
        if not result.dry_run:
            try:
                api.delete(r)
            except ProviderError as exc:
                result.errors.append(str(exc))
                change = Change("failed", r.key, note=f"delete failed: {exc}")
        result.changes.append(change)


def _apply(api: ManagementApi, spec: MonitorSpec, remote: Any, marker: str, result: SyncResult) -> Change:
    desired = api.desired(spec)
    if remote is None:
        change = Change("create", spec.key, spec.entry, diff=tuple((k, None, v) for k, v in desired.items()))
    else:
        owners = remote.owners(MARKER_PREFIX)
        others = [o for o in owners if o != marker]
        if others:
            note = f"exists and is managed by {others[0]!r} (another app or prefix): left unchanged"
            result.errors.append(f"monitor {spec.key!r} (beat entry {spec.entry!r}) {note}")
            return Change("conflict", spec.key, spec.entry, note=note)
        diff = api.diff(desired, remote, marker)
        if not diff:
            return Change("unchanged", spec.key, spec.entry)
        note = "" if owners else "made by hand with this slug: now managed"
        change = Change("update", spec.key, spec.entry, diff=tuple(diff), note=note)
    if result.dry_run:
        return change
    try:
        if remote is None:
            api.create(desired, marker)
        else:
            api.update(remote, desired, marker)
    except ProviderError as exc:
        result.errors.append(str(exc))
        return Change("failed", spec.key, spec.entry, note=f"{change.action} failed: {exc}")
    return change


def sync_in_background(app: Celery, *, budget: float = BACKGROUND_BUDGET) -> threading.Thread:
    """Sync on a daemon thread bounded by `budget` seconds: beat never waits for (or on) the provider."""
    deadline = time.monotonic() + budget

    def run() -> None:
        try:
            result = sync_monitors(app, deadline=deadline, import_tasks=False)
            for warning in result.warnings:
                logger.warning("celery-heartbeat: sync: %s", warning)
            if result.ok:
                logger.info("celery-heartbeat: %s", result.summary())
            else:
                for error in result.errors:
                    logger.warning("celery-heartbeat: sync failed (beat runs on): %s", error)
        except Exception:
            logger.exception("celery-heartbeat: sync on beat start failed (beat runs on)")

    thread = threading.Thread(target=run, name="celery-heartbeat-sync", daemon=True)
    thread.start()
    return thread
