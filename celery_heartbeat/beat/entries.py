"""Reading the beat schedule the way beat will run it, without starting beat.

Sources, by `app.conf.beat_scheduler`:
- the default scheduler and RedBeat: `app.conf.beat_schedule` (RedBeat's entries
  created at run time straight in Redis are not seen);
- django-celery-beat's DatabaseScheduler: enabled `PeriodicTask` rows (one-off and
  clocked ones excluded), plus `beat_schedule` entries beat has not written to the
  database yet. Each crontab keeps its own time zone.

A crontab is evaluated in its own zone when it has one (django-celery-beat's
TzAwareCrontab), otherwise in `app.timezone` (which honours `enable_utc`).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from celery_heartbeat.config.names import is_internal

#: The send options a django-celery-beat row carries (its DatabaseScheduler passes them on).
_ROW_OPTIONS = ("queue", "exchange", "routing_key", "priority")


@dataclass(frozen=True)
class BeatEntry:
    """One periodic task as beat sends it: task name, arguments and schedule."""

    name: str
    task: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    schedule: Any
    tz: dt.tzinfo | None
    source: str = "beat_schedule"
    #: The entry's send options (``queue``, ``exchange``, ``routing_key``, ...), as beat passes them.
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EntriesRead:
    entries: list[BeatEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Entries can change while processes run (a database), so readers refresh now and then.
    dynamic: bool = False


def scheduler_kind(app: Celery) -> str:
    """'django', 'redbeat' or 'default', from `beat_scheduler` (set it in config, not only on beat's CLI)."""
    configured = app.conf.beat_scheduler
    name = configured if isinstance(configured, str) else f"{configured.__module__}.{configured.__name__}"
    if "django_celery_beat" in name:
        return "django"
    if "redbeat" in name.lower():
        return "redbeat"
    return "default"


def _own_zone(schedule: Any) -> dt.tzinfo | None:
    """A zone the schedule carries itself (TzAwareCrontab); a plain crontab's cached `tz` is ignored."""
    from celery.schedules import crontab

    if type(schedule) is crontab:
        return None
    zone = vars(schedule).get("tz")
    return zone if isinstance(zone, dt.tzinfo) else None


def _is_lazy(value: Any) -> bool:
    from celery.beat import BeatLazyFunc

    if isinstance(value, BeatLazyFunc):
        return True
    if isinstance(value, (list, tuple)):
        return any(_is_lazy(v) for v in value)
    if isinstance(value, Mapping):
        return any(_is_lazy(v) for v in value.values())
    return False


def _entry(
    app: Celery, name: str, task: str, args: Any, kwargs: Any, schedule: Any, source: str, options: Any = None
) -> BeatEntry:
    if not isinstance(task, str) or not task:
        raise ValueError(f"'task' must be a task name, not {task!r}")
    args = tuple(args or ())
    kwargs = dict(kwargs or {})
    if _is_lazy(args) or _is_lazy(kwargs):
        raise ValueError("its arguments are computed when beat sends it (BeatLazyFunc), so a worker cannot match them")
    return BeatEntry(
        name=name,
        task=task,
        args=args,
        kwargs=kwargs,
        schedule=schedule,
        tz=_own_zone(schedule) or app.timezone,
        source=source,
        options=dict(options or {}),
    )


def _from_config(app: Celery, read: EntriesRead, skip: set[str]) -> None:
    from celery.schedules import maybe_schedule

    for name, spec in (app.conf.beat_schedule or {}).items():
        if name in skip:
            continue
        try:
            schedule = maybe_schedule(spec["schedule"], spec.get("relative", False), app=app)
            args, kwargs, options = spec.get("args"), spec.get("kwargs"), spec.get("options")
            entry = _entry(app, name, spec["task"], args, kwargs, schedule, "beat_schedule", options)
        except Exception as exc:
            read.warnings.append(f"beat entry {name!r}: cannot be monitored: {exc}")
            continue
        read.entries.append(entry)


def _from_django(app: Celery, read: EntriesRead) -> set[str]:
    """Enabled PeriodicTask rows; the names read (empty when the database cannot be read)."""
    try:
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup()
        # Imported by name: an optional dependency without type information.
        PeriodicTask = importlib.import_module("django_celery_beat.models").PeriodicTask
    except Exception as exc:
        read.warnings.append(
            f"django-celery-beat: cannot read periodic tasks ({type(exc).__name__}: {exc}); "
            "using app.conf.beat_schedule only"
        )
        return set()
    names: set[str] = set()
    try:
        rows = list(PeriodicTask.objects.filter(enabled=True).select_related("interval", "crontab", "solar", "clocked"))
    except Exception as exc:
        read.warnings.append(f"django-celery-beat: cannot query periodic tasks ({type(exc).__name__}: {exc})")
        return set()
    for row in rows:
        names.add(row.name)
        if row.one_off or getattr(row, "clocked_id", None):
            continue  # runs once: nothing to expect afterwards
        try:
            args = json.loads(row.args or "[]")
            kwargs = json.loads(row.kwargs or "{}")
            options = {key: getattr(row, key, None) for key in _ROW_OPTIONS}
            options = {key: value for key, value in options.items() if value is not None}
            entry = _entry(app, row.name, row.task, args, kwargs, row.schedule, "django_celery_beat", options)
        except Exception as exc:
            read.warnings.append(f"beat entry {row.name!r}: cannot be monitored: {exc}")
            continue
        read.entries.append(entry)
    return names


def read_entries(app: Celery) -> EntriesRead:
    """Every periodic task beat would send, skipping Celery's and this library's own entries."""
    read = EntriesRead()
    seen: set[str] = set()
    if scheduler_kind(app) == "django":
        read.dynamic = True
        seen = _from_django(app, read)
    _from_config(app, read, seen)
    read.entries = [e for e in read.entries if not is_internal(e.name) and not is_internal(e.task)]
    return read
