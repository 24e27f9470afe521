"""Which monitor a task name maps to: exact entry, then the task's own option, then the longest glob."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

import celery_heartbeat
from celery_heartbeat.config.monitor import Monitor, parse_monitor
from celery_heartbeat.config.registry import Registry


def _registry(urls: dict[str, str], options: dict[str, str] | None = None) -> Registry:
    monitors = {k: m for k, v in urls.items() if (m := parse_monitor(k, v)) is not None}
    return Registry(monitors, lambda name: (options or {}).get(name))


def _url(monitor: Monitor | None) -> str | None:
    return None if monitor is None else monitor.url


def test_exact_name_beats_glob() -> None:
    """An exact entry wins over any glob that also matches."""
    r = _registry({"proj.reports.*": "https://x.example/glob", "proj.reports.daily": "https://x.example/exact"})
    assert "https://x.example/exact" == _url(r.resolve("proj.reports.daily"))
    assert "https://x.example/glob" == _url(r.resolve("proj.reports.weekly"))


def test_longest_glob_wins() -> None:
    """Among matching globs the longest (most specific) pattern wins, whatever the mapping order."""
    r = _registry({"proj.*": "https://x.example/short", "proj.reports.*": "https://x.example/long"})
    assert "https://x.example/long" == _url(r.resolve("proj.reports.daily"))
    assert "https://x.example/short" == _url(r.resolve("proj.billing.run"))


def test_precedence_exact_then_task_option_then_glob() -> None:
    """Operators override code with an exact entry; the task's own option beats a glob."""
    r = _registry(
        {"proj.a": "https://x.example/exact", "proj.*": "https://x.example/glob"},
        {"proj.a": "https://x.example/option-a", "proj.b": "https://x.example/option-b"},
    )
    assert "https://x.example/exact" == _url(r.resolve("proj.a"))
    assert "https://x.example/option-b" == _url(r.resolve("proj.b"))
    assert "https://x.example/glob" == _url(r.resolve("proj.c"))


def test_unmapped_task_resolves_to_none() -> None:
    """A task no entry matches has no monitor."""
    assert None is _registry({"proj.a": "https://x.example/a"}).resolve("other.task")


def test_unmatched_lists_typos_but_not_canvas_monitor_names() -> None:
    """Dotted names and globs that match no task are reported; dot-less monitor names are not."""
    r = _registry(
        {
            "proj.reprot": "https://x.example/1",
            "proj.x.*": "https://x.example/2",
            "nightly-pipeline": "https://x.example/3",
        }
    )
    assert ["proj.reprot", "proj.x.*"] == r.unmatched(["proj.report", "proj.y.z"])


def test_task_option_through_a_real_app(make_app: Callable[..., Celery]) -> None:
    """`@app.task(heartbeat=...)` declares the monitor next to the code."""
    app = make_app()

    @app.task(name="proj.own", heartbeat={"url": "https://hc.internal.example/ping/abc", "provider": "healthchecks"})
    def own() -> None: ...

    monitor = celery_heartbeat.install(app).monitor_for("proj.own")
    assert Monitor("https://hc.internal.example/ping/abc", "healthchecks") == monitor


def test_a_broad_glob_leaves_celerys_and_the_librarys_own_tasks_alone() -> None:
    """A "*" glob maps user tasks, not celery.* built-ins or the library's ping tasks (which ping their own monitor)."""
    r = _registry({"*": "https://x.example/all"})
    assert "https://x.example/all" == _url(r.resolve("proj.anything"))
    assert None is r.resolve("celery_heartbeat.ping")
    assert None is r.resolve("celery.chord_unlock")
