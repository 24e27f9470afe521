"""`celery -A proj heartbeat ...`: see which periodic tasks have no monitor, send a test ping, probe health.

A `celery` subcommand (entry point group `celery.commands`), so it gets the
app exactly as `celery worker` does: `-A`, `--config`, preload options. URLs
are secrets here too: everything printed is redacted.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Callable, NoReturn, TypeVar

import click
from celery import Celery
from celery.bin.base import CeleryCommand, handle_preload_options

from celery_heartbeat._exceptions import BrokerDown, ConfigurationError
from celery_heartbeat._redact import redact
from celery_heartbeat._state import registry_of, settings_of
from celery_heartbeat._tasks import resolve_target, send_now
from celery_heartbeat.beat.automonitor import plan_entries
from celery_heartbeat.beat.entries import read_entries
from celery_heartbeat.beat.liveness import ENTRY_NAME, liveness_of
from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.names import BEAT_TASK, is_internal
from celery_heartbeat.config.providers import Kind
from celery_heartbeat.config.registry import Registry, is_glob
from celery_heartbeat.config.settings import Settings
from celery_heartbeat.health.coverage import coverage_of, schedule_routes

_F = TypeVar("_F", bound=Callable[..., Any])


def _preload(command: _F) -> _F:
    """Celery's handling of user preload options (`app.user_options["preload"]`), typed."""
    wrapped: _F = handle_preload_options(command)
    return wrapped


def _app(ctx: click.Context) -> Celery:
    obj = ctx.find_root().obj
    app = getattr(obj, "app", None)
    if app is None:
        raise click.UsageError("run it as a celery subcommand: celery -A proj heartbeat ...")
    return app


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def _require_named_app(ctx: click.Context) -> None:
    """Exit 2 without `-A`: Celery then hands over its empty default app, and a check of it passes vacuously."""
    if ctx.find_root().params.get("app") is None:
        _fail(
            "no Celery app given: run `celery -A proj heartbeat check` (or set CELERY_APP). "
            "Without -A this would check Celery's empty default app, which always passes.",
            code=2,
        )


@dataclass(frozen=True)
class _Row:
    """One periodic task as `check` shows it."""

    name: str
    task: str
    schedule: Any
    monitor: Monitor | None
    why: str = ""
    problem: str | None = None


@dataclass
class _View:
    """What the app's configuration maps, read without installing or connecting anything."""

    app: Celery
    settings: Settings
    registry: Registry

    @classmethod
    def load(cls, app: Celery) -> _View:
        app.loader.import_default_modules()
        return cls(app, settings_of(app), registry_of(app))

    def source(self, task_name: str) -> str:
        """Why a task has its monitor, in the registry's precedence order."""
        return self.registry.source(task_name) or "?"

    def beat_rows(self) -> tuple[list[_Row], list[str]]:
        """Every beat entry (as the configured scheduler sees them) with its monitor, and read warnings."""
        read = read_entries(self.app)
        rows = []
        for auto in plan_entries(self.app, self.settings, self.registry.resolve, read):
            entry = auto.entry
            if auto.explicit is not None:
                rows.append(_Row(entry.name, entry.task, entry.schedule, auto.explicit, self.source(entry.task)))
            elif auto.monitor is not None:
                rows.append(_Row(entry.name, entry.task, entry.schedule, auto.monitor, "monitors as code"))
            else:
                problem = auto.reason if auto.problem else None
                rows.append(_Row(entry.name, entry.task, entry.schedule, None, problem=problem))
        liveness = liveness_of(self.app)
        if liveness is not None:  # re-applied when beat starts, whatever beat_schedule says now
            schedule = liveness.entry()["schedule"]
            rows.append(_Row(ENTRY_NAME, BEAT_TASK, schedule, liveness.monitor, "beat liveness"))
        return sorted(rows, key=lambda row: row.name), list(read.warnings)


def _show(monitor: Monitor | None) -> str:
    if monitor is None:
        return "NO MONITOR"
    return f"{monitor.provider} {redact(monitor.url)}"


def _loses_failures(monitor: Monitor | None, settings: Settings) -> bool:
    """A task monitor that wants failure pings but whose provider has no failure signal (generic URLs)."""
    if monitor is None or monitor.supports("failure"):
        return False
    return settings.send_failure if monitor.failure is None else monitor.failure


_SUCCESS_ONLY = "  (success pings only: generic URLs get no failure pings)"


def _schedule(app: Celery, value: Any) -> str:
    from celery.schedules import maybe_schedule

    try:
        return repr(maybe_schedule(value, app=app))
    except Exception:
        return repr(value)


@click.group(name="heartbeat")
@click.pass_context
@_preload
def heartbeat(ctx: click.Context, /, **_: Any) -> None:
    """Heartbeat monitors: check the mapping, send a test ping, probe worker health."""


@heartbeat.command(cls=CeleryCommand)
@click.option("--strict", is_flag=True, help="Exit 1 when a periodic task has no monitor.")
@click.option(
    "--consumers",
    is_flag=True,
    help="Also ask the live workers which queues they consume; exit 1 when a beat entry's "
    "(or monitored task's) queue has none, 2 when the broker cannot be reached.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
    help="With --consumers: the longest wait for workers' answers.",
)
@click.pass_context
def check(ctx: click.Context, strict: bool, consumers: bool, timeout: float) -> None:
    """List beat entries and mapped tasks with their monitors (URLs redacted)."""
    _require_named_app(ctx)
    app = _app(ctx)
    try:
        view = _View.load(app)
        rows, warnings = view.beat_rows()
        names = sorted(name for name in app.tasks if not is_internal(name))
        mapped = [(name, view.registry.resolve(name)) for name in names]
    except ConfigurationError as exc:
        _fail(f"configuration error: {exc}")

    enabled = view.settings.enabled
    if not enabled:
        click.echo(
            "celery-heartbeat is DISABLED (heartbeat_enabled=False): no pings are sent; "
            "the monitors below are what it would ping.\n"
        )
    click.echo(f"Beat schedule ({len(rows)} entries):")
    for row in rows:
        unknown = "" if row.task in app.tasks else "  (task not registered here)"
        note = f"  [{row.why}]" if row.why else f"  ({row.problem})" if row.problem else ""
        shown = f"{row.task} {_schedule(app, row.schedule)} -> {_show(row.monitor)}"
        generic = _SUCCESS_ONLY if row.task != BEAT_TASK and _loses_failures(row.monitor, view.settings) else ""
        click.echo(f"  {row.name}: {shown}{note}{generic}{unknown}")
    with_monitor = [(name, monitor) for name, monitor in mapped if monitor is not None]
    click.echo(f"\nTasks with a monitor ({len(with_monitor)} of {len(names)}):")
    for name, monitor in with_monitor:
        generic = _SUCCESS_ONLY if _loses_failures(monitor, view.settings) else ""
        click.echo(f"  {name} -> {_show(monitor)}  [{view.source(name)}]{generic}")
    canvas_names = sorted(k for k in view.settings.urls if not is_glob(k) and "." not in k and k not in app.tasks)
    if canvas_names:
        click.echo(f"\nMonitor names for canvases ({len(canvas_names)}):")
        for key in canvas_names:
            click.echo(f"  {key} -> {_show(view.settings.urls[key])}")
    unmatched = view.registry.unmatched(names)
    if unmatched:
        click.echo(f"\nheartbeat_urls entries that match no task (typo?): {', '.join(unmatched)}")
    for warning in warnings:
        click.echo(f"\nwarning: {warning}")
    success_only = sorted({name for name, monitor in with_monitor if _loses_failures(monitor, view.settings)})
    if success_only:
        click.echo(
            f"\n{len(success_only)} task(s) ping generic URLs, which get success pings only: a failure sends "
            'nothing, so the monitor alerts only when its expected ping is late. Set "provider" in a '
            "monitor dict if the host is a known service under another name."
        )
    missing = [row.name for row in rows if row.monitor is None]
    code = 0
    if not enabled:
        click.echo("\nheartbeat_enabled is False: no periodic task is monitored.")
        code = 1 if strict else 0
    elif missing:
        click.echo(f"\n{len(missing)} periodic task(s) without a monitor: {', '.join(missing)}")
        code = 1 if strict else 0
    else:
        click.echo("\nEvery periodic task has a monitor.")
    if consumers:
        code = max(code, _check_consumers(app, timeout))
    sys.exit(code)


def _check_consumers(app: Celery, timeout: float) -> int:
    """Print each beat entry and monitored task whose queue no live worker consumes; the exit code."""
    routes = schedule_routes(app)
    try:
        coverage = coverage_of(app, routes, timeout=timeout)
    except BrokerDown as exc:
        click.echo(f"\nQueue consumers: cannot ask the workers: {exc}", err=True)
        return 2
    workers = len(coverage.workers)
    click.echo(f"\nQueue consumers ({workers} worker{'s' if workers != 1 else ''} answered within {timeout:g} s):")
    for queue in sorted({route.queue for route in routes if route.queue is not None}):
        found = coverage.consumers.get(queue, [])
        click.echo(f"  {queue}: {', '.join(found) if found else 'NO CONSUMER'}")
    gaps = coverage.uncovered()
    for route in gaps:
        if route.queue is None:
            click.echo(f"  {route.label()}: {route.problem}")
    if not gaps:
        click.echo("Every beat entry's and monitored task's queue has a live consumer.")
        return 0
    click.echo(f"\n{len(gaps)} beat entr(ies) or task(s) sent to a queue no live worker consumes (they never run):")
    for route in gaps:
        click.echo(f"  {route.label()} -> {route.queue or '?'}")
    return 1


def _find_monitor(view: _View, target: str) -> Monitor | None:
    """A URL, a `heartbeat_urls` name, a beat entry name, or a task name, in that order."""
    if "://" in target:
        return resolve_target(view.app, target)
    monitor = view.registry.by_name(target)
    if monitor is not None:
        return monitor
    for row in view.beat_rows()[0]:
        if row.name == target:
            return row.monitor
    return view.registry.resolve(target)


@heartbeat.command(cls=CeleryCommand)
@click.argument("target", metavar="NAME|URL")
@click.option("--start", "kind", flag_value="start", help="Send a start ping.")
@click.option("--fail", "kind", flag_value="failure", help="Send a failure ping.")
@click.pass_context
def ping(ctx: click.Context, target: str, kind: str | None) -> None:
    """Send one real ping now and print the HTTP status and time (exit 1 on failure).

    NAME is a heartbeat_urls key, a beat entry or a task name.
    """
    app = _app(ctx)
    chosen: Kind = "start" if kind == "start" else "failure" if kind == "failure" else "success"
    try:
        view = _View.load(app)
        monitor = _find_monitor(view, target)
    except ConfigurationError as exc:
        _fail(f"configuration error: {exc}")
    shown = redact(target) if "://" in target else target
    if monitor is None:
        _fail(f"no monitor for {shown}: not a heartbeat_urls name, beat entry or task with a monitor")
    request, outcome = send_now(monitor, chosen, view.settings)
    if request is None or outcome is None:
        _fail(f"{monitor.provider} monitors have no {chosen} signal; nothing sent to {redact(monitor.url)}")
    took = f"{outcome.elapsed * 1000:.0f} ms"
    tries = f"{outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}"
    if outcome.sent:
        click.echo(f"{chosen} ping to {redact(request.url)}: HTTP {outcome.status} in {took} ({tries})")
        return
    _fail(f"{chosen} ping to {redact(request.url)} failed: {outcome.error} in {took} ({tries})")


@heartbeat.command(cls=CeleryCommand)
@click.option("-Q", "--queue", "queues", multiple=True, help="Require workers consuming this queue (repeatable).")
@click.option("--min-workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--threshold",
    type=click.IntRange(min=0),
    default=None,
    help="Also fail when a --queue holds more messages than this (backlog).",
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON body an HTTP probe would return.")
@click.pass_context
def health(
    ctx: click.Context,
    queues: tuple[str, ...],
    min_workers: int,
    threshold: int | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Exit 0 when workers (and queues) are healthy, 1 when not: usable as a container probe."""
    from celery_heartbeat.health import check_queue, check_workers

    app = _app(ctx)
    if threshold is not None and not queues:
        raise click.UsageError("--threshold needs at least one --queue")
    reports = []
    for queue in queues or (None,):
        reports.append(check_workers(app, timeout=timeout, min_workers=min_workers, queue=queue))
        if queue is not None and threshold is not None:
            reports.append(check_queue(app, queue, threshold=threshold, timeout=timeout))
    healthy = all(report.ok for report in reports)
    if as_json:
        if len(reports) == 1:
            click.echo(reports[0].to_json())
        else:
            status = next((r.status for r in reports if not r.ok), "ok")
            body = {"status": status, "checks": [dict(r.body) for r in reports]}
            click.echo(json.dumps(body, separators=(",", ":")))
    else:
        for report in reports:
            details = " ".join(f"{k}={v}" for k, v in report.body.items() if k != "status")
            click.echo(f"{report.status} {details}".rstrip())
    if not healthy:
        sys.exit(1)


def _add_subcommands() -> None:
    """Subcommands that live in their own modules (`heartbeat sync`: monitors as code)."""
    from celery_heartbeat.sync.command import sync

    heartbeat.add_command(sync)


_add_subcommands()
