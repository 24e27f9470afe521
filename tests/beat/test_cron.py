"""Celery schedules rendered as cron / periods, checked against croniter and Celery's own crontab."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab, schedule, solar
from croniter import croniter

from celery_heartbeat.beat.cron import (
    Expected,
    UnsupportedSchedule,
    expected_for,
    format_seconds,
    render_crontab,
    render_field,
    zone_name,
)

START = dt.datetime(2025, 1, 1, 0, 0, 30)


def celery_fire_times(cron: crontab, tz: str, count: int = 20) -> list[dt.datetime]:
    """The next `count` fire times after START, computed by Celery's own crontab arithmetic."""
    app = Celery("cron-walk", set_as_current=False)
    app.conf.timezone = tz
    cron.app = app
    zone = ZoneInfo(tz)
    last = START.replace(tzinfo=zone)
    out = []
    for _ in range(count):
        # Beat asks right after a run, so "now" is the last run time (Celery 5.3 compares the two).
        cron.nowfun = lambda at=last: at
        last_run, delta, _now = cron.remaining_delta(last)
        last = last_run + delta
        out.append(last.replace(tzinfo=None))
    return out


def croniter_fire_times(expr: str, tz: str, count: int = 20, *, day_or: bool = True) -> list[dt.datetime]:
    """The next `count` fire times after START of a 5-field cron, evaluated by croniter in `tz`."""
    it = croniter(expr, START.replace(tzinfo=ZoneInfo(tz)), day_or=day_or)
    return [it.get_next(dt.datetime).replace(tzinfo=None) for _ in range(count)]


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("every minute", {}, "* * * * *"),
    ("daily at 03:00", {"minute": 0, "hour": 3}, "0 3 * * *"),
    ("every 15 minutes", {"minute": "*/15"}, "*/15 * * * *"),
    ("step inside a range", {"minute": "5-50/15"}, "5-50/15 * * * *"),
    ("ranges and a list", {"minute": "1,2,3,10,20-25", "hour": "*/4"}, "1-3,10,20-25 */4 * * *"),
    ("weekday office hours", {"minute": "0,30", "hour": "9-17", "day_of_week": "mon-fri"}, "0,30 9-17 * * 1-5"),
    ("day names, Sunday is 0", {"minute": 0, "hour": 12, "day_of_week": "sun"}, "0 12 * * 0"),
    ("weekend", {"minute": 0, "hour": 0, "day_of_week": "sat,sun"}, "0 0 * * 0,6"),
    ("every other weekday number", {"minute": 0, "hour": 6, "day_of_week": "*/2"}, "0 6 * * */2"),
    ("twice a month", {"minute": 0, "hour": 0, "day_of_month": "1,15"}, "0 0 1,15 * *"),
    (
        "first of the month (Cronitor's example without day_of_week)",
        {"minute": 0, "hour": 3, "day_of_month": 1},
        "0 3 1 * *",
    ),
    ("the 31st: only months that have one", {"minute": 0, "hour": 0, "day_of_month": 31}, "0 0 31 * *"),
    ("quarterly", {"minute": 0, "hour": 4, "day_of_month": 1, "month_of_year": "*/3"}, "0 4 1 */3 *"),
    (
        "month range with step",
        {"minute": 0, "hour": 0, "day_of_month": "1-7", "month_of_year": "2-11/3"},
        "0 0 1-7 2-11/3 *",
    ),
    ("python sets and lists", {"minute": [0, 17, 42], "hour": {1, 13}}, "0,17,42 1,13 * * *"),
    ("explicit full ranges are *", {"minute": 5, "day_of_month": "1-31", "day_of_week": "0-6"}, "5 * * * *"),
    ("month names", {"minute": 0, "hour": 8, "month_of_year": "1-6", "day_of_week": "mon"}, "0 8 * 1-6 1"),
    ("two values a step apart are a list", {"minute": "5,35"}, "5,35 * * * *"),
]


@pytest.mark.parametrize(("label", "fields", "expected"), CASES, ids=[c[0] for c in CASES])
def test_crontab_renders_as_cron_with_the_same_next_20_fire_times(
    label: str, fields: dict[str, Any], expected: str
) -> None:
    """Each crontab renders to the expected 5-field cron, and croniter fires it exactly when Celery does."""
    cron = crontab(**fields)
    rendered = render_crontab(cron)
    assert expected == rendered
    assert celery_fire_times(cron, "UTC") == croniter_fire_times(rendered, "UTC")


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_fire_times_match_in_a_non_utc_zone(tz: str) -> None:
    """Evaluated in the app's zone, the rendered cron fires at the same wall-clock times as Celery's crontab."""
    cron = crontab(minute="15,45", hour="8-18/2", day_of_week="mon-fri")
    rendered = render_crontab(cron)
    assert "15,45 8-18/2 * * 1-5" == rendered
    assert celery_fire_times(cron, tz) == croniter_fire_times(rendered, tz)


def test_day_of_month_and_day_of_week_together_are_refused_not_rendered_wrong() -> None:
    """Celery ANDs a restricted day_of_month with a restricted day_of_week while cron ORs them: refused with why."""
    cron = crontab(0, 3, day_of_month=1, day_of_week="mon")
    with pytest.raises(UnsupportedSchedule) as info:
        render_crontab(cron)
    assert "both restricted" in str(info.value)
    # The refusal is warranted: Celery fires only on Mondays that are the 1st (AND), which a
    # standard cron evaluator (OR, croniter's default like Vixie cron and Healthchecks) disagrees with.
    celery_times = celery_fire_times(cron, "UTC", count=5)
    assert celery_times == croniter_fire_times("0 3 1 * 1", "UTC", count=5, day_or=False)
    assert celery_times != croniter_fire_times("0 3 1 * 1", "UTC", count=5)
    assert all(t.day == 1 and t.weekday() == 0 for t in celery_times)


@pytest.mark.parametrize(
    ("values", "bounds", "expected"),
    [
        ({0}, (0, 59), "0"),
        (set(range(60)), (0, 59), "*"),
        ({0, 20, 40}, (0, 59), "*/20"),
        ({1, 21, 41}, (0, 59), "1-41/20"),
        ({3, 4, 5, 6}, (0, 23), "3-6"),
        ({3, 4}, (0, 23), "3,4"),
        ({1, 2, 3, 7, 9, 10, 11}, (1, 31), "1-3,7,9-11"),
        ({1, 3, 5, 7, 9, 11}, (1, 12), "*/2"),
    ],
)
def test_render_field_compacts_sets(values: set[int], bounds: tuple[int, int], expected: str) -> None:
    """A field's values are written as *, */step, a-b/step, ranges and single values."""
    assert expected == render_field(values, bounds)


def test_render_field_rejects_out_of_range_values() -> None:
    """A value outside the field's range is an error rather than a silently clipped field."""
    with pytest.raises(UnsupportedSchedule):
        render_field({7}, (0, 6))


def test_interval_is_a_period_in_seconds() -> None:
    """An interval schedule becomes a period, sub-minute ones included (the provider decides what it can do)."""
    assert Expected(kind="interval", period=30.0) == expected_for(schedule(timedelta(seconds=30)), None)
    assert Expected(kind="interval", period=5400.0) == expected_for(schedule(timedelta(minutes=90)), None)


def test_crontab_carries_its_zone_name() -> None:
    """A crontab's expectation names the zone it is evaluated in."""
    got = expected_for(crontab(minute=0, hour=2), ZoneInfo("Europe/Berlin"))
    assert Expected(kind="cron", cron="0 2 * * *", tz="Europe/Berlin") == got


def _solar() -> solar:
    """A solar schedule without the optional `ephem` dependency (only its type matters here)."""
    try:
        return solar("sunset", 52.52, 13.40)
    except Exception:  # celery[solar] not installed
        instance: solar = solar.__new__(solar)
        instance.event, instance.lat, instance.lon = "sunset", 52.52, 13.40
        return instance


def test_solar_schedules_are_refused_with_a_reason() -> None:
    """Solar events move every day: refused, never approximated."""
    with pytest.raises(UnsupportedSchedule) as info:
        expected_for(_solar(), None)
    assert "solar" in str(info.value)


def test_a_zone_without_a_name_is_refused() -> None:
    """A fixed offset has no IANA name the provider could use: refused, asking for app.conf.timezone."""
    with pytest.raises(UnsupportedSchedule) as info:
        expected_for(crontab(minute=0), dt.timezone(timedelta(hours=2)))
    assert "app.conf.timezone" in str(info.value)


def test_zone_names() -> None:
    """zoneinfo keys, UTC and Celery's app zones (UTC, configured, enable_utc=False) have IANA names."""
    assert "UTC" == zone_name(dt.timezone.utc)
    assert "Asia/Tokyo" == zone_name(ZoneInfo("Asia/Tokyo"))
    assert "UTC" == zone_name(Celery("zones", set_as_current=False).timezone)
    chicago = Celery("chicago", set_as_current=False)
    chicago.conf.timezone = "America/Chicago"
    assert "America/Chicago" == zone_name(chicago.timezone)
    local = Celery("local", set_as_current=False)
    local.conf.enable_utc = False
    assert zone_name(local.timezone) is not None


def test_format_seconds() -> None:
    """Periods print in the largest whole unit."""
    assert ["30s", "90s", "2m", "1h", "1d", "1.5s"] == [format_seconds(s) for s in (30, 90, 120, 3600, 86400, 1.5)]
