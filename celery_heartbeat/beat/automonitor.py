"""Beat entries as monitors, with no URL per task: a slug per entry, pinged on the provider's slug URL.

A worker knows which entry a run came from by what beat sends: the task name and
its arguments. The table (task name -> canonical arguments -> monitor) is built
once per process on first use (and at worker_ready), so a task run costs one
dict lookup plus, for periodic task names only, one small JSON dump of its
arguments. Two entries that send the same task with the same arguments cannot
be told apart by a worker: neither is monitored, and that is said loudly,
rather than one monitor silently receiving the other's pings.

Explicit mappings (`heartbeat_urls`, a task's `heartbeat=` option) always win:
auto-monitoring is only the fallback for tasks that have none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from celery import Celery

from celery_heartbeat.beat.entries import BeatEntry, EntriesRead, read_entries
from celery_heartbeat.config.auto_settings import SLUG_RE, EntryOptions
from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.providers import Provider
from celery_heartbeat.config.settings import Settings

logger = logging.getLogger("celery_heartbeat")

#: How often a process re-reads entries that can change while it runs (django-celery-beat).
REFRESH_SECONDS = 300.0
MARKER_PREFIX = "celery-heartbeat:"

Explicit = Callable[[str], "Monitor | None"]
Table = dict[str, dict[str, Monitor]]


def provider_of(settings: Settings) -> Provider | None:
    """The provider beat entries are monitored on, from which keys are set."""
    if settings.healthchecks_ping_key or settings.healthchecks_api_key:
        return "healthchecks"
    if settings.cronitor_api_key or settings.cronitor_ping_key:
        return "cronitor"
    return None


def ping_url(settings: Settings, key: str) -> str | None:
    """The ping URL of monitor `key`: Healthchecks' slug URL or Cronitor's telemetry URL."""
    provider = provider_of(settings)
    if provider == "healthchecks" and settings.healthchecks_ping_key:
        return f"{settings.healthchecks_ping_url}/{settings.healthchecks_ping_key.reveal()}/{key}"
    if provider == "cronitor":
        ping_key = settings.cronitor_ping_key or settings.cronitor_api_key
        if ping_key:
            return f"{settings.cronitor_ping_url}/p/{ping_key.reveal()}/{key}"
    return None


def can_ping(settings: Settings) -> bool:
    """Whether workers have what a slug/key ping URL needs."""
    provider = provider_of(settings)
    return bool((provider == "healthchecks" and settings.healthchecks_ping_key) or provider == "cronitor")


def slug_for(name: str, prefix: str = "") -> str:
    """A stable slug: the entry name when it already is one, else a slugified name plus a short hash.

    The hash keeps two names that slugify alike ("Nightly report", "nightly-report")
    on two monitors, and the slug never changes while the entry name does not.
    """
    if SLUG_RE.match(prefix + name):
        return prefix + name
    base = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_") or "entry"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:6]
    return f"{prefix}{base[: 100 - len(prefix) - 7]}-{digest}"


def marker_for(app: Celery, settings: Settings) -> str:
    """The tag that marks monitors this project manages (only those are ever pruned)."""
    main = re.sub(r"\s+", "-", app.main or "celery")
    return f"{MARKER_PREFIX}{settings.monitor_prefix}{main}"


def arg_key(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> str:
    """Arguments as the same text on both sides of the broker (a tuple sent arrives as a list)."""
    try:
        return json.dumps([list(args or ()), dict(kwargs or {})], sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr((list(args or ()), sorted((kwargs or {}).items(), key=repr)))


@dataclass(frozen=True)
class AutoEntry:
    """One beat entry and what becomes of it: its monitor, or why it has none."""

    entry: BeatEntry
    key: str
    grace: float
    monitor: Monitor | None = None
    reason: str | None = None
    explicit: Monitor | None = None
    #: The reason is a mistake to fix (ambiguous entries, a shared slug, an invalid option).
    problem: bool = False


def plan_entries(app: Celery, settings: Settings, explicit: Explicit, read: EntriesRead) -> list[AutoEntry]:
    """Each entry with its slug and monitor, or the reason it is not auto-monitored."""
    provider = provider_of(settings)
    out: list[AutoEntry] = []
    for entry in read.entries:
        options = settings.beat_entries.get(entry.name, EntryOptions())
        key = options.slug or slug_for(entry.name, settings.monitor_prefix)
        grace = options.grace if options.grace is not None else settings.grace
        try:
            mapped = explicit(entry.task)
        except Exception as exc:  # an invalid per-task option: the hooks report it
            reason = f"its task's heartbeat option is invalid ({exc})"
            out.append(AutoEntry(entry, key, grace, reason=reason, problem=True))
            continue
        url = ping_url(settings, key)
        if mapped is not None:
            out.append(AutoEntry(entry, key, grace, reason="explicitly mapped", explicit=mapped))
        elif not options.enabled:
            out.append(AutoEntry(entry, key, grace, reason="opted out in heartbeat_beat_entries"))
        elif not settings.auto_monitor:
            out.append(AutoEntry(entry, key, grace, reason="heartbeat_auto_monitor is False"))
        elif provider is None or url is None:
            out.append(AutoEntry(entry, key, grace, reason="no provider ping key configured"))
        else:
            assert provider is not None
            out.append(AutoEntry(entry, key, grace, monitor=Monitor(url=url, provider=provider)))
    # Same task and arguments on two entries: a worker cannot tell their runs apart.
    groups: dict[tuple[str, str], list[int]] = {}
    for index, auto in enumerate(out):
        if auto.monitor is not None:
            groups.setdefault((auto.entry.task, arg_key(auto.entry.args, auto.entry.kwargs)), []).append(index)
    for indexes in groups.values():
        if len(indexes) > 1:
            names = ", ".join(repr(out[i].entry.name) for i in indexes)
            reason = (
                f"entries {names} send the same task with the same arguments, so a worker cannot tell "
                "their runs apart; give them different arguments or explicit monitors"
            )
            for i in indexes:
                out[i] = AutoEntry(out[i].entry, out[i].key, out[i].grace, reason=reason, problem=True)
    # Two entries given the same slug would share one monitor.
    by_key: dict[str, list[int]] = {}
    for index, auto in enumerate(out):
        if auto.monitor is not None:
            by_key.setdefault(auto.key, []).append(index)
    for key, indexes in by_key.items():
        if len(indexes) > 1:
            names = ", ".join(repr(out[i].entry.name) for i in indexes)
            reason = f"entries {names} have the same slug {key!r}; give them different slugs"
            for i in indexes:
                out[i] = AutoEntry(out[i].entry, out[i].key, out[i].grace, reason=reason, problem=True)
    return out


class AutoMonitors:
    """The per-app auto-monitoring state: the entry table for the task hot path."""

    def __init__(self, app: Celery, settings: Settings, explicit: Explicit) -> None:
        self.app = app
        self.settings = settings
        self.explicit = explicit
        self.active = settings.auto_monitor and can_ping(settings)
        self._table: Table | None = None
        self._expires: float | None = None
        self._refreshing = False
        self._warned: set[str] = set()

    def entries(self) -> tuple[list[AutoEntry], list[str]]:
        """A fresh read of the beat schedule, planned (for sync and the CLI)."""
        read = read_entries(self.app)
        return plan_entries(self.app, self.settings, self.explicit, read), read.warnings

    def lookup(self, task_name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> Monitor | None:
        """The monitor of the beat entry this run came from (hot path: built once, then dict lookups)."""
        if not self.active:
            return None
        table = self._table
        if table is None:  # not warmed (no worker_ready / worker_process_init here): once per process
            table = self.build()
        elif self._expires is not None and time.monotonic() > self._expires:
            self._refresh_in_background()  # a database read must not run on the task's thread
        by_args = table.get(task_name)
        if not by_args:
            return None
        return by_args.get(arg_key(args, kwargs))

    def _refresh_in_background(self) -> None:
        """Re-read a dynamic schedule (django-celery-beat) on a short-lived thread; runs keep the old table."""
        if self._refreshing:
            return
        self._refreshing = True
        self._expires = None  # until the refresh sets the next expiry

        def refresh() -> None:
            try:
                self.build()
            finally:
                self._refreshing = False
                _close_django_connection()

        threading.Thread(target=refresh, name="celery-heartbeat-entries", daemon=True).start()

    def warm(self) -> int:
        """Build the table now (the worker's main process, before it forks); how many entries are monitored.

        The worker's pool processes inherit the table, so none of them reads the
        database at start: with django-celery-beat, a query in a forked child
        before Celery's Django fixup closed the inherited connection could share
        one database socket between processes. The connection this read opened
        is closed here, before the fork, for the same reason.
        """
        try:
            table = self.build()
        finally:
            _close_django_connection()
        return sum(len(by_args) for by_args in table.values())

    def count(self) -> int:
        """How many beat entries are monitored (from the table built so far; 0 before)."""
        return sum(len(by_args) for by_args in (self._table or {}).values())

    def build(self) -> Table:
        """(Re)build the table; on failure keep the previous one and try again later."""
        previous = self._table
        try:
            read = read_entries(self.app)
            planned = plan_entries(self.app, self.settings, self.explicit, read)
        except Exception as exc:
            self._warn_once(f"celery-heartbeat: cannot read beat entries ({type(exc).__name__}: {exc})")
            self._expires = time.monotonic() + REFRESH_SECONDS
            self._table = previous if previous is not None else {}
            return self._table
        table: Table = {}
        for auto in planned:
            if auto.monitor is not None:
                table.setdefault(auto.entry.task, {})[arg_key(auto.entry.args, auto.entry.kwargs)] = auto.monitor
        for warning in read.warnings:
            self._warn_once(f"celery-heartbeat: {warning}")
        for auto in planned:
            if auto.problem:
                self._warn_once(f"celery-heartbeat: beat entry {auto.entry.name!r} is not monitored: {auto.reason}")
        self._expires = time.monotonic() + REFRESH_SECONDS if read.dynamic else None
        self._table = table
        return table

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)


def _close_django_connection() -> None:
    """A thread that queried Django's database closes its own connection (Django opens one per thread)."""
    db = sys.modules.get("django.db")
    if db is not None:
        with contextlib.suppress(Exception):  # best effort: the refresh itself succeeded or was logged
            db.connection.close()
