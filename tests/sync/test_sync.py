"""`heartbeat sync`: beat schedules pushed to Healthchecks and Cronitor management APIs (local fakes over HTTP)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery, signals
from celery.beat import Service
from celery.bin.base import CLIContext
from celery.schedules import crontab, solar
from click.testing import CliRunner
from fake_monitoring_api import FakeCronitor, FakeHealthchecks
from support import write_django_settings

import celery_heartbeat
from celery_heartbeat.beat.cron import local_zone_name, zone_name
from celery_heartbeat.sync import SyncResult, sync_monitors
from celery_heartbeat.sync.client import ApiClient, ProviderError, redact_urls
from celery_heartbeat.sync.command import sync as sync_command

PING_KEY = "ping-key-abcdef123456"


@pytest.fixture
def hc() -> Iterator[FakeHealthchecks]:
    """A running fake Healthchecks management API."""
    with FakeHealthchecks() as api:
        yield api


@pytest.fixture
def cronitor() -> Iterator[FakeCronitor]:
    """A running fake Cronitor API (two monitors per page, to exercise paging)."""
    with FakeCronitor() as api:
        yield api


def _app(name: str, schedule: dict[str, Any], conf: dict[str, Any]) -> Celery:
    app = Celery(name, broker="memory://", set_as_current=False)
    app.conf.beat_schedule = schedule
    app.conf.update(conf)
    return app


def hc_app(name: str, hc: FakeHealthchecks, schedule: dict[str, Any], **conf: Any) -> Celery:
    """An app whose settings hold only Healthchecks keys (not installed: sync reads app.conf)."""
    keys = {
        "heartbeat_healthchecks_ping_key": PING_KEY,
        "heartbeat_healthchecks_api_key": hc.api_key,
        "heartbeat_healthchecks_api_url": hc.url,
    }
    return _app(name, schedule, {**keys, **conf})


def actions(result: SyncResult) -> dict[str, str]:
    return {change.key: change.action for change in result.changes}


NIGHTLY = {"task": "proj.report", "schedule": crontab(minute=0, hour=3)}
EVERY_5_MIN = {"task": "proj.cleanup", "schedule": timedelta(minutes=5)}


def test_first_sync_creates_a_check_per_entry_with_schedule_zone_and_grace(
    hc: FakeHealthchecks, unique_name: str
) -> None:
    """A crontab becomes a cron check in the app's zone, an interval a simple check; both marked as this app's."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY, "cleanup": EVERY_5_MIN}, timezone="Europe/Berlin")
    result = sync_monitors(app)
    assert result.ok, result.format()
    assert {"nightly-report": "create", "cleanup": "create"} == actions(result)
    nightly = hc.by_slug("nightly-report")
    assert ("0 3 * * *", "Europe/Berlin", 300) == (nightly["schedule"], nightly["tz"], nightly["grace"])
    assert "nightly-report" == nightly["name"]
    assert f"celery-heartbeat:{unique_name}" == nightly["tags"]
    assert "*" == nightly["channels"]
    assert "beat entry 'nightly-report'" in nightly["desc"]
    cleanup = hc.by_slug("cleanup")
    assert (300, 300) == (cleanup["timeout"], cleanup["grace"])
    assert "schedule" not in cleanup


def test_a_second_sync_changes_nothing(hc: FakeHealthchecks, unique_name: str) -> None:
    """Sync is idempotent: the second run only reads and reports every monitor unchanged."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY, "cleanup": EVERY_5_MIN})
    assert sync_monitors(app).ok
    hc.clear_log()
    again = sync_monitors(app)
    assert {"nightly-report": "unchanged", "cleanup": "unchanged"} == actions(again)
    assert [] == hc.writes()
    assert ["GET"] == [r.method for r in hc.requests]


def test_dry_run_prints_the_diff_and_changes_nothing(hc: FakeHealthchecks, unique_name: str) -> None:
    """--dry-run shows field-by-field what would change against what the provider has, and writes nothing."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY, "cleanup": EVERY_5_MIN})
    assert sync_monitors(app).ok
    app.conf.beat_schedule = {
        "nightly-report": {"task": "proj.report", "schedule": crontab(minute=30, hour=4)},
        "cleanup": EVERY_5_MIN,
        "new-one": {"task": "proj.new", "schedule": timedelta(hours=1)},
    }
    before = {slug: hc.by_slug(slug) for slug in ("nightly-report", "cleanup")}
    hc.clear_log()
    result = sync_monitors(app, dry_run=True)
    assert [] == hc.writes()
    assert before == {slug: hc.by_slug(slug) for slug in ("nightly-report", "cleanup")}
    assert {"nightly-report": "update", "cleanup": "unchanged", "new-one": "create"} == actions(result)
    text = result.format()
    assert "~ nightly-report: would update - schedule: '0 3 * * *' -> '30 4 * * *'" in text
    assert "+ new-one: would create - grace=300 timeout=3600" in text
    assert text.startswith("Healthchecks (dry run): 1 to create, 1 to update, 1 unchanged")


def test_a_changed_schedule_is_updated_in_place(hc: FakeHealthchecks, unique_name: str) -> None:
    """Changing an entry's schedule updates the same check (same UUID), switching cron to period if needed."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY})
    assert sync_monitors(app).ok
    uuid_before = hc.by_slug("nightly-report")["uuid"]
    app.conf.beat_schedule = {"nightly-report": {"task": "proj.report", "schedule": timedelta(hours=6)}}
    result = sync_monitors(app)
    assert {"nightly-report": "update"} == actions(result)
    after = hc.by_slug("nightly-report")
    assert (uuid_before, 21600) == (after["uuid"], after["timeout"])
    assert "schedule" not in after


def test_prune_removes_only_monitors_this_app_created(hc: FakeHealthchecks, unique_name: str) -> None:
    """Without --prune orphans are reported stale; with it only checks tagged with this app's marker go."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY})
    hc.add(name="gone", slug="gone", tags=f"team-a celery-heartbeat:{unique_name}")
    hc.add(name="other app", slug="other", tags="celery-heartbeat:another-app")
    hc.add(name="by hand", slug="by-hand", tags="prod")
    kept = sync_monitors(app)
    assert {"nightly-report": "create", "gone": "stale"} == actions(kept)
    assert {"gone", "other", "by-hand", "nightly-report"} == {c["slug"] for c in hc.checks.values()}
    dry = sync_monitors(app, prune=True, dry_run=True)
    assert "- gone: would delete - no beat entry monitors it" in dry.format()
    assert 4 == len(hc.checks)
    pruned = sync_monitors(app, prune=True)
    assert {"nightly-report": "unchanged", "gone": "delete"} == actions(pruned)
    assert {"other", "by-hand", "nightly-report"} == {c["slug"] for c in hc.checks.values()}


def test_prune_refuses_to_delete_everything_when_the_schedule_came_back_empty(
    hc: FakeHealthchecks, unique_name: str
) -> None:
    """An empty schedule (here: its only entry failed to load) would prune every monitor: refused, unless allowed."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY, "cleanup": EVERY_5_MIN})
    assert sync_monitors(app).ok
    app.conf.beat_schedule = {"nightly-report": {"task": "proj.report"}}  # no "schedule": cannot be read
    hc.clear_log()

    refused = sync_monitors(app, prune=True)
    dry = sync_monitors(app, prune=True, dry_run=True)

    assert [] == hc.writes()
    assert {"nightly-report": "stale", "cleanup": "stale"} == actions(refused)
    assert [
        "refusing to prune: the schedule has no entries (beat entry 'nightly-report': cannot be monitored: "
        "'schedule'), so --prune would delete all 2 monitor(s) this app owns, and their history. "
        "If the schedule is really empty, pass --allow-empty (allow_empty=True)."
    ] == refused.errors
    assert not dry.ok
    app.conf.beat_schedule = {}
    allowed = sync_monitors(app, prune=True, allow_empty=True)
    assert allowed.ok, allowed.format()
    assert {"nightly-report": "delete", "cleanup": "delete"} == actions(allowed)
    assert {} == hc.checks


def test_prune_with_entries_left_still_deletes_and_nothing_to_prune_is_no_refusal(
    hc: FakeHealthchecks, unique_name: str
) -> None:
    """The guard is only for an empty schedule that would delete: an empty schedule with nothing to delete is fine."""
    app = hc_app(unique_name, hc, {})

    assert sync_monitors(app, prune=True).ok


def test_cli_prune_refusal_exits_1_and_allow_empty_deletes(hc: FakeHealthchecks, unique_name: str) -> None:
    """`sync --prune` on an empty schedule exits 1 saying why; with `--allow-empty` it deletes (which needs --prune)."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY})
    assert sync_monitors(app).ok
    app.conf.beat_schedule = {}
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(sync_command, list(args), obj=CLIContext(app=app, no_color=True, workdir=None))

    refused = invoke("--prune")
    assert 1 == refused.exit_code
    assert "error: refusing to prune: the schedule has no entries (beat_schedule is empty)" in refused.output
    assert 1 == len(hc.checks)
    assert 2 == invoke("--allow-empty").exit_code
    assert 0 == invoke("--prune", "--allow-empty").exit_code
    assert {} == hc.checks


def test_network_errors_never_show_the_requested_path(unique_name: str) -> None:
    """requests names the full URL in a connection error; a Healthchecks check UUID there is a ping credential."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    check = "6e1fbf8f-cd5c-4a9c-8f2e-0123456789ab"
    client = ApiClient(f"http://127.0.0.1:{port}", attempts=1)

    with pytest.raises(ProviderError) as raised:
        client.request("DELETE", f"/api/v3/checks/{check}")

    assert f"DELETE http://127.0.0.1:{port}/api/v3/chec…/6e1f…: ConnectionError: connection refused" == str(
        raised.value
    )


def test_an_error_body_echoing_a_check_url_is_redacted() -> None:
    """Free text from the provider (an error body) is shown with its URLs redacted and UUIDs cut."""
    text = (
        "no such check https://hc-ping.com/6e1fbf8f-cd5c-4a9c-8f2e-0123456789ab (6e1fbf8f-cd5c-4a9c-8f2e-0123456789ab)"
    )

    assert "no such check https://hc-ping.com/6e1f… (6e1f…)" == redact_urls(text)


def test_another_apps_check_with_the_same_slug_is_a_conflict_left_alone(hc: FakeHealthchecks, unique_name: str) -> None:
    """A slug already managed by another app is never taken over: the sync reports an error and writes nothing."""
    hc.add(name="nightly-report", slug="nightly-report", tags="celery-heartbeat:billing", timeout=60)
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY})
    result = sync_monitors(app)
    assert not result.ok
    assert {"nightly-report": "conflict"} == actions(result)
    assert 60 == hc.by_slug("nightly-report")["timeout"]
    assert "celery-heartbeat:billing" in result.errors[0]


def test_a_hand_made_check_with_the_entrys_slug_is_adopted(hc: FakeHealthchecks, unique_name: str) -> None:
    """An unmarked check with the entry's slug is updated and marked, keeping the user's own tags."""
    hc.add(name="Nightly", slug="nightly-report", tags="prod reports", timeout=86400)
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY})
    result = sync_monitors(app)
    assert {"nightly-report": "update"} == actions(result)
    check = hc.by_slug("nightly-report")
    assert f"prod reports celery-heartbeat:{unique_name}" == check["tags"]
    assert "0 3 * * *" == check["schedule"]
    assert 1 == len(hc.checks)


def test_time_zone_follows_app_timezone_and_enable_utc(hc: FakeHealthchecks, unique_name: str) -> None:
    """No zone and enable_utc=True is UTC; app.conf.timezone is used; enable_utc=False uses the local zone."""
    utc = hc_app(unique_name, hc, {"a": NIGHTLY})
    assert sync_monitors(utc).ok
    assert "UTC" == hc.by_slug("a")["tz"]
    ny = hc_app(unique_name, hc, {"a": NIGHTLY}, timezone="America/New_York")
    assert sync_monitors(ny).ok
    assert "America/New_York" == hc.by_slug("a")["tz"]
    local = hc_app(unique_name, hc, {"a": NIGHTLY}, enable_utc=False)
    assert sync_monitors(local).ok
    assert zone_name(local.timezone) == hc.by_slug("a")["tz"] == local_zone_name()


def test_an_entrys_own_zone_wins_over_the_apps(hc: FakeHealthchecks, unique_name: str) -> None:
    """A crontab carrying its zone (django-celery-beat's TzAwareCrontab) is synced in that zone."""
    tzcrontab = pytest.importorskip("django_celery_beat.tzcrontab")
    schedule = {
        "tokyo-morning": {"task": "proj.t", "schedule": tzcrontab.TzAwareCrontab(0, 9, tz=ZoneInfo("Asia/Tokyo"))}
    }
    app = hc_app(unique_name, hc, schedule, timezone="Europe/Berlin")
    assert sync_monitors(app).ok
    check = hc.by_slug("tokyo-morning")
    assert ("0 9 * * *", "Asia/Tokyo") == (check["schedule"], check["tz"])


def _solar() -> solar:
    """A solar schedule without the optional `ephem` dependency (only its type matters to the sync)."""
    try:
        return solar("sunset", 52.52, 13.40)
    except Exception:
        instance: solar = solar.__new__(solar)
        instance.event, instance.lat, instance.lon = "sunset", 52.52, 13.40
        return instance


def test_schedules_a_provider_cannot_express_get_a_warning_naming_the_entry(
    hc: FakeHealthchecks, unique_name: str
) -> None:
    """Solar, day_of_month+day_of_week and >1 year periods make no monitor and a warning naming each entry."""
    schedule = {
        "sunset-lights": {"task": "proj.lights", "schedule": _solar()},
        "first-monday": {"task": "proj.m", "schedule": crontab(0, 3, day_of_month="1-7", day_of_week="mon")},
        "biennial": {"task": "proj.b", "schedule": timedelta(days=800)},
        "fine": EVERY_5_MIN,
    }
    result = sync_monitors(hc_app(unique_name, hc, schedule))
    assert result.ok
    assert {"sunset-lights": "skip", "first-monday": "skip", "biennial": "skip", "fine": "create"} == actions(result)
    assert {"fine"} == {c["slug"] for c in hc.checks.values()}
    joined = "\n".join(result.warnings)
    assert "beat entry 'sunset-lights': no monitor can be made for it: solar schedules" in joined
    assert "beat entry 'first-monday': no monitor can be made for it: day_of_month (1-7) and day_of_week (1)" in joined
    assert "beat entry 'biennial': no monitor can be made for it: its period (800d) is longer" in joined


def test_an_interval_below_the_providers_minimum_is_raised_to_it_with_a_warning(
    hc: FakeHealthchecks, unique_name: str
) -> None:
    """A 15 s entry gets Healthchecks' shortest period (60 s) instead of being dropped, and the user is told."""
    result = sync_monitors(hc_app(unique_name, hc, {"poll": {"task": "proj.poll", "schedule": 15.0}}))
    assert result.ok
    assert 60 == hc.by_slug("poll")["timeout"]
    assert [
        "beat entry 'poll' runs every 15s, more often than the shortest period Healthchecks accepts (1m): "
        "its monitor expects a ping at least every 1m"
    ] == result.warnings


def test_per_entry_grace_and_opt_out(hc: FakeHealthchecks, unique_name: str) -> None:
    """heartbeat_beat_entries sets an entry's grace (clamped to the provider's range, with a warning) or opts it out."""
    schedule = {"slow": NIGHTLY, "quick": EVERY_5_MIN, "noisy": {"task": "proj.noisy", "schedule": 600}}
    entries = {"slow": {"grace": 5400}, "quick": {"grace": 10}, "noisy": False}
    result = sync_monitors(hc_app(unique_name, hc, schedule, heartbeat_beat_entries=entries))
    assert {"slow": "create", "quick": "create", "noisy": "skip"} == actions(result)
    assert (5400, 60) == (hc.by_slug("slow")["grace"], hc.by_slug("quick")["grace"])
    assert ["beat entry 'quick': grace 10s is outside what Healthchecks accepts; using 1m"] == result.warnings


def test_explicit_mappings_are_not_managed(hc: FakeHealthchecks, unique_name: str) -> None:
    """An entry whose task has its own URL in heartbeat_urls keeps it: no auto monitor is synced for it."""
    schedule = {"nightly-report": NIGHTLY, "cleanup": EVERY_5_MIN}
    urls = {"proj.report": "https://hc-ping.com/6e1fbf8f-cd5c-4a9c-9ef2-000000000000"}
    result = sync_monitors(hc_app(unique_name, hc, schedule, heartbeat_urls=urls))
    assert {"nightly-report": "skip", "cleanup": "create"} == actions(result)
    assert "explicitly mapped" == next(c.note for c in result.changes if c.key == "nightly-report")


def test_two_entries_a_worker_cannot_tell_apart_are_refused(hc: FakeHealthchecks, unique_name: str) -> None:
    """Same task, same arguments, two schedules: no monitor for either, and a warning naming both."""
    schedule = {
        "morning": {"task": "proj.digest", "schedule": crontab(minute=0, hour=8)},
        "evening": {"task": "proj.digest", "schedule": crontab(minute=0, hour=20)},
        "digest-fr": {"task": "proj.digest", "schedule": crontab(minute=0, hour=9), "kwargs": {"lang": "fr"}},
    }
    result = sync_monitors(hc_app(unique_name, hc, schedule))
    assert {"morning": "skip", "evening": "skip", "digest-fr": "create"} == actions(result)
    assert any("'morning', 'evening' send the same task with the same arguments" in w for w in result.warnings)


def test_a_wrong_api_key_fails_with_a_redacted_error(hc: FakeHealthchecks, unique_name: str) -> None:
    """A 401 is an error naming the status; neither key appears anywhere in the result."""
    secret = "wrong-key-0123456789abcdef"
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY}, heartbeat_healthchecks_api_key=secret)
    result = sync_monitors(app)
    assert not result.ok
    assert "HTTP 401" in result.errors[0]
    text = result.format()
    assert secret not in text and PING_KEY not in text
    assert {} == hc.checks


def test_an_unreachable_provider_is_an_error_not_a_hang(unique_name: str) -> None:
    """A closed port fails within the timeout and attempts: an error, never an exception or a hang."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = Celery(unique_name, set_as_current=False)
    app.conf.beat_schedule = {"nightly-report": NIGHTLY}
    app.conf.heartbeat_healthchecks_api_key = "key-0123456789"
    app.conf.heartbeat_healthchecks_ping_key = PING_KEY
    app.conf.heartbeat_healthchecks_api_url = f"http://127.0.0.1:{port}"
    app.conf.heartbeat_max_attempts = 2
    started = time.monotonic()
    result = sync_monitors(app)
    assert time.monotonic() - started < 5.0
    assert 1 == len(result.errors)
    assert f"GET http://127.0.0.1:{port}/api/v3/chec…/: ConnectionError" in result.errors[0]


def test_a_deadline_bounds_a_hanging_provider(hc: FakeHealthchecks, unique_name: str) -> None:
    """With a provider that never answers, the run ends by its deadline."""
    hc.delay = 30.0
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY}, heartbeat_timeout=10.0)
    started = time.monotonic()
    result = sync_monitors(app, deadline=time.monotonic() + 1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, elapsed
    assert not result.ok


def test_no_keys_is_an_error_saying_which_settings(unique_name: str) -> None:
    """Without provider keys the sync does nothing and says which settings to set."""
    app = Celery(unique_name, set_as_current=False)
    app.conf.beat_schedule = {"nightly-report": NIGHTLY}
    result = sync_monitors(app)
    assert [
        "no provider keys: set heartbeat_healthchecks_ping_key and heartbeat_healthchecks_api_key, "
        "or heartbeat_cronitor_api_key"
    ] == result.errors


def cronitor_app(name: str, api: FakeCronitor, schedule: dict[str, Any], **conf: Any) -> Celery:
    keys = {"heartbeat_cronitor_api_key": api.api_key, "heartbeat_cronitor_api_url": api.url}
    return _app(name, schedule, {**keys, **conf})


def test_cronitor_monitors_get_cron_in_field_order_with_timezone_and_grace(
    cronitor: FakeCronitor, unique_name: str
) -> None:
    """Cronitor jobs get minute-hour-dom-month-dow crons with a timezone, or 'every N unit' periods, and grace."""
    schedule = {
        "monthly": {"task": "proj.m", "schedule": crontab(0, 3, day_of_month=1)},
        "cleanup": EVERY_5_MIN,
    }
    app = cronitor_app(unique_name, cronitor, schedule, timezone="Europe/Paris", heartbeat_grace=120)
    result = sync_monitors(app)
    assert result.ok, result.format()
    monthly = cronitor.monitors["monthly"]
    expected = {"type": "job", "schedule": "0 3 1 * *", "timezone": "Europe/Paris", "grace_seconds": 120}
    assert expected == {k: monthly[k] for k in expected}
    assert [f"celery-heartbeat:{unique_name}"] == monthly["tags"]
    assert ("every 5 minutes", None) == (
        cronitor.monitors["cleanup"]["schedule"],
        cronitor.monitors["cleanup"].get("timezone"),
    )


def test_cronitor_sync_is_idempotent_and_prunes_only_its_own_across_pages(
    cronitor: FakeCronitor, unique_name: str
) -> None:
    """Listing follows pages; a second run writes nothing; prune deletes only monitors with this app's tag."""
    cronitor.monitors = {
        "old": {"key": "old", "type": "job", "tags": [f"celery-heartbeat:{unique_name}"]},
        "theirs": {"key": "theirs", "type": "job", "tags": ["celery-heartbeat:other"]},
        "manual": {"key": "manual", "type": "job", "tags": []},
    }
    schedule = {"a": EVERY_5_MIN, "b": NIGHTLY, "c": {"task": "proj.c", "schedule": 3600}}
    app = cronitor_app(unique_name, cronitor, schedule)
    assert sync_monitors(app).ok
    cronitor.clear_log()
    again = sync_monitors(app, prune=True)
    assert {"a": "unchanged", "b": "unchanged", "c": "unchanged", "old": "delete"} == actions(again)
    assert ["DELETE"] == [r.method for r in cronitor.writes()]
    assert ["1", "2", "3"] == [r.query["page"][0] for r in cronitor.requests if r.method == "GET"]
    assert {"a", "b", "c", "theirs", "manual"} == set(cronitor.monitors)


def test_cli_sync_dry_run_and_exit_codes(hc: FakeHealthchecks, unique_name: str) -> None:
    """`heartbeat sync --dry-run` prints the plan and exits 0; a failing provider exits 1."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY})
    runner = CliRunner()
    dry = runner.invoke(sync_command, ["--dry-run"], obj=CLIContext(app=app, no_color=True, workdir=None))
    assert 0 == dry.exit_code, dry.output
    assert "+ nightly-report: would create - grace=300 schedule='0 3 * * *' tz='UTC'" in dry.output
    assert {} == hc.checks
    done = runner.invoke(sync_command, [], obj=CLIContext(app=app, no_color=True, workdir=None))
    assert 0 == done.exit_code
    assert 1 == len(hc.checks)
    app.conf.heartbeat_healthchecks_api_key = "not-the-key-0123456789"
    failed = runner.invoke(sync_command, [], obj=CLIContext(app=app, no_color=True, workdir=None))
    assert 1 == failed.exit_code
    assert "not-the-key-0123456789" not in failed.output


def test_sync_on_beat_start_runs_in_the_background(hc: FakeHealthchecks, unique_name: str) -> None:
    """With heartbeat_sync_on_beat_start, beat_init starts a background sync and returns at once."""
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY}, heartbeat_sync_on_beat_start=True)
    handle = celery_heartbeat.install(app)
    try:
        started = time.monotonic()
        signals.beat_init.send(sender=Service(app))
        assert time.monotonic() - started < 0.5
        deadline = time.monotonic() + 10
        while not hc.checks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "0 3 * * *" == hc.by_slug("nightly-report")["schedule"]
    finally:
        handle.uninstall()


def test_sync_on_beat_start_never_blocks_beat_when_the_provider_hangs(hc: FakeHealthchecks, unique_name: str) -> None:
    """A provider that does not answer does not hold up beat_init (the sync thread times out on its own)."""
    hc.delay = 5.0
    app = hc_app(unique_name, hc, {"nightly-report": NIGHTLY}, heartbeat_sync_on_beat_start=True)
    handle = celery_heartbeat.install(app)
    try:
        started = time.monotonic()
        signals.beat_init.send(sender=Service(app))
        assert time.monotonic() - started < 0.5
    finally:
        handle.uninstall()


DJANGO_APP = """
import os, sys, json
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", "django_celery_beat", verbosity=0)
from celery import Celery
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from celery_heartbeat.sync import sync_monitors
import zoneinfo

tokyo = CrontabSchedule.objects.create(
    minute="0", hour="9", day_of_week="1-5", timezone=zoneinfo.ZoneInfo("Asia/Tokyo")
)
every10 = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
PeriodicTask.objects.create(name="tokyo-standup", task="proj.standup", crontab=tokyo, kwargs=json.dumps({"team": "jp"}))
PeriodicTask.objects.create(name="poll-feeds", task="proj.poll", interval=every10, args="[1, 2]")
PeriodicTask.objects.create(name="disabled", task="proj.off", interval=every10, enabled=False)

app = Celery("djproj", set_as_current=False)
app.conf.beat_scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
app.conf.timezone = "Europe/Berlin"
app.conf.beat_schedule = {"from-settings": {"task": "proj.s", "schedule": 3600.0}}
app.conf.heartbeat_healthchecks_ping_key = "pingkey0123456"
app.conf.heartbeat_healthchecks_api_key = sys.argv[1]
app.conf.heartbeat_healthchecks_api_url = sys.argv[2]
result = sync_monitors(app)
print(result.format())
sys.exit(0 if result.ok else 1)
"""


@pytest.mark.slow
def test_database_scheduler_entries_are_synced_with_their_own_zone(
    hc: FakeHealthchecks, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """django-celery-beat: enabled PeriodicTask rows (crontab in its own zone, intervals) plus settings entries."""
    pytest.importorskip("django_celery_beat")
    import subprocess

    db = tmp_path / "db.sqlite3"
    write_django_settings(tmp_path, "djsettings", db)
    (tmp_path / "djrun.py").write_text(DJANGO_APP)
    env = dict(clean_env, PYTHONPATH=f"{tmp_path}:{clean_env['PYTHONPATH']}")
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "djrun.py"), hc.api_key, hc.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    standup = hc.by_slug("tokyo-standup")
    assert ("0 9 * * 1-5", "Asia/Tokyo") == (standup["schedule"], standup["tz"])
    assert 600 == hc.by_slug("poll-feeds")["timeout"]
    assert 3600 == hc.by_slug("from-settings")["timeout"]
    assert {"tokyo-standup", "poll-feeds", "from-settings"} == {c["slug"] for c in hc.checks.values()}


def test_a_monitor_prefix_keeps_two_environments_apart(hc: FakeHealthchecks, unique_name: str) -> None:
    """heartbeat_monitor_prefix prefixes slug, name and marker, so staging never prunes or claims production's."""
    prod = hc_app(unique_name, hc, {"nightly-report": NIGHTLY})
    staging = hc_app(unique_name, hc, {"nightly-report": NIGHTLY}, heartbeat_monitor_prefix="staging-")
    assert sync_monitors(prod).ok
    assert sync_monitors(staging).ok
    check = hc.by_slug("staging-nightly-report")
    assert ("staging-nightly-report", f"celery-heartbeat:staging-{unique_name}") == (check["name"], check["tags"])
    staging.conf.beat_schedule = {}
    assert {"staging-nightly-report": "delete"} == actions(sync_monitors(staging, prune=True, allow_empty=True))
    assert ["nightly-report"] == [c["slug"] for c in hc.checks.values()]


CLI_APP = """
from celery import Celery
from celery.schedules import crontab

app = Celery("cliproj")
app.conf.timezone = "Europe/Berlin"
app.conf.beat_schedule = {{
    "nightly-report": {{"task": "proj.report", "schedule": crontab(minute=0, hour=3)}},
    "poll": {{"task": "proj.poll", "schedule": 30.0}},
}}
app.conf.heartbeat_healthchecks_ping_key = "pk-0123456789abcdef"
app.conf.heartbeat_healthchecks_api_key = {api_key!r}
app.conf.heartbeat_healthchecks_api_url = {api_url!r}
"""


@pytest.mark.slow
def test_celery_heartbeat_sync_command(hc: FakeHealthchecks, tmp_path: Path, clean_env: dict[str, str]) -> None:
    """`celery -A proj heartbeat sync --dry-run` prints the plan; `sync` creates; a second `sync` changes nothing."""
    import subprocess

    (tmp_path / "cliproj.py").write_text(CLI_APP.format(api_key=hc.api_key, api_url=hc.url))
    env = dict(clean_env, PYTHONPATH=f"{tmp_path}:{clean_env['PYTHONPATH']}")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "celery", "-A", "cliproj", "heartbeat", "sync", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    dry = run("--dry-run")
    assert 0 == dry.returncode, dry.stdout + dry.stderr
    assert "+ nightly-report: would create - grace=300 schedule='0 3 * * *' tz='Europe/Berlin'" in dry.stdout
    assert "warning: beat entry 'poll' runs every 30s" in dry.stdout
    assert {} == hc.checks
    done = run()
    assert 0 == done.returncode, done.stdout + done.stderr
    assert done.stdout.startswith("Healthchecks: 2 created, 0 unchanged")
    again = run("--prune")
    assert 0 == again.returncode
    assert again.stdout.startswith("Healthchecks: 2 unchanged")
    assert hc.api_key not in dry.stdout + done.stdout + again.stdout + again.stderr
