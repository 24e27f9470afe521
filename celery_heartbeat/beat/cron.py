"""Celery schedules as a monitoring service understands them: a 5-field cron with a time zone, or a period.

Rendered from the sets Celery expands a crontab into (never from the strings
the user wrote), in cron's own field order: minute hour day-of-month month
day-of-week. A field covering its whole range is written ``*``, which matters
for the one place cron and Celery disagree: when both day-of-month and
day-of-week are restricted, cron fires when *either* matches and Celery only
when *both* do. That case is refused with a reason instead of being rendered
into a monitor that expects runs which never happen.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from celery_heartbeat._exceptions import UnsupportedSchedule

# (lowest, highest) of each cron field, in cron's order.
MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK = (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)


@dataclass(frozen=True)
class Expected:
    """When a monitor should expect pings: a cron in a zone, or a period in seconds."""

    kind: Literal["cron", "interval"]
    cron: str | None = None
    tz: str | None = None
    period: float | None = None

    def describe(self) -> str:
        if self.kind == "cron":
            return f"cron '{self.cron}' ({self.tz})"
        return f"every {format_seconds(self.period or 0.0)}"


def format_seconds(seconds: float) -> str:
    """A short human form: 90 -> '90s', 3600 -> '1h', 86400 -> '1d'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def render_field(values: Iterable[int], bounds: tuple[int, int]) -> str:
    """One cron field from a set of values: ``*``, ``*/s``, ``a-b/s``, or ranges and values."""
    low, high = bounds
    vals = sorted(set(values))
    if not vals or vals[0] < low or vals[-1] > high:
        raise UnsupportedSchedule(f"values {vals} are outside {low}-{high}")
    if vals == list(range(low, high + 1)):
        return "*"
    if len(vals) >= 3:  # two values read better as a list
        step = vals[1] - vals[0]
        if all(b - a == step for a, b in zip(vals, vals[1:])):
            if vals[0] == low and vals[-1] + step > high:
                return f"*/{step}"
            return f"{vals[0]}-{vals[-1]}" + (f"/{step}" if step > 1 else "")
    parts: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{vals[i]}-{vals[j]}")
        else:
            parts.extend(str(v) for v in vals[i : j + 1])
        i = j + 1
    return ",".join(parts)


def render_crontab(schedule: Any) -> str:
    """A Celery crontab as ``minute hour day-of-month month day-of-week`` (Sunday is 0).

    Raises UnsupportedSchedule when day-of-month and day-of-week are both
    restricted: Celery runs only on days matching both, cron on days matching
    either, so no 5-field cron means the same thing.
    """
    minute = render_field(schedule.minute, MINUTE)
    hour = render_field(schedule.hour, HOUR)
    dom = render_field(schedule.day_of_month, DAY_OF_MONTH)
    month = render_field(schedule.month_of_year, MONTH)
    dow = render_field(schedule.day_of_week, DAY_OF_WEEK)
    if dom != "*" and dow != "*":
        raise UnsupportedSchedule(
            f"day_of_month ({dom}) and day_of_week ({dow}) are both restricted: Celery runs only on days "
            "matching both, while cron runs on days matching either, so no cron expression means the same; "
            "restrict only one of them (and check the other inside the task), or give this entry an "
            "explicit monitor"
        )
    return f"{minute} {hour} {dom} {month} {dow}"


def zone_name(tz: dt.tzinfo | None) -> str | None:
    """The IANA name of a zone (zoneinfo, pytz, UTC, or Celery's local zone); None when unknown."""
    if tz is None:
        return None
    key = getattr(tz, "key", None)  # zoneinfo.ZoneInfo
    if isinstance(key, str) and key:
        return key
    zone = getattr(tz, "zone", None)  # pytz
    if isinstance(zone, str) and zone:
        return zone
    if type(tz).__name__ == "LocalTimezone":  # celery.utils.time.LocalTimezone: enable_utc=False, no zone
        return local_zone_name()
    if tz is dt.timezone.utc:
        return "UTC"
    return None


def local_zone_name() -> str | None:
    """This machine's zone name, from $TZ, /etc/timezone or the /etc/localtime link."""
    env = os.environ.get("TZ", "").lstrip(":")
    if "/" in env and not env.startswith("/"):
        return env
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            name = handle.read().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        return None
    marker = "/zoneinfo/"
    if marker in target:
        return target.split(marker, 1)[1]
    return None


def expected_for(schedule: Any, tz: dt.tzinfo | None) -> Expected:
    """The expectation for one Celery schedule evaluated in `tz`; UnsupportedSchedule when none is exact."""
    from celery.schedules import crontab, solar
    from celery.schedules import schedule as interval

    if isinstance(schedule, solar):
        raise UnsupportedSchedule(
            "solar schedules (sunrise, sunset, ...) move every day and cannot be expressed as a cron "
            "expression or a fixed period"
        )
    if isinstance(schedule, crontab):
        name = zone_name(tz)
        if name is None:
            raise UnsupportedSchedule(
                f"cannot tell the name of its time zone ({tz!r}); set app.conf.timezone (e.g. 'Europe/Berlin')"
            )
        return Expected(kind="cron", cron=render_crontab(schedule), tz=name)
    if type(schedule) is interval:
        seconds = schedule.run_every.total_seconds()
        if seconds <= 0:
            raise UnsupportedSchedule(f"its period ({seconds:g}s) is not positive")
        return Expected(kind="interval", period=seconds)
    raise UnsupportedSchedule(f"schedules of type {type(schedule).__name__} are not supported")
