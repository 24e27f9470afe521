"""`celery -A proj heartbeat sync [--dry-run] [--prune [--allow-empty]]`: push beat schedules to the provider."""

from __future__ import annotations

from typing import Any

import click
from celery.bin.base import CeleryCommand

from celery_heartbeat.sync.engine import sync_monitors

_STYLES = {"+": "green", "~": "yellow", "-": "red", "x": "red", "!": "yellow", "?": "yellow"}


@click.command("sync", cls=CeleryCommand)
@click.option("--dry-run", is_flag=True, help="Print what would change on the provider, change nothing.")
@click.option("--prune", is_flag=True, help="Also delete monitors this app created whose beat entry is gone.")
@click.option(
    "--allow-empty",
    is_flag=True,
    help="With --prune: delete even when the schedule holds no entries at all (refused by default: "
    "a settings module that failed to load would otherwise delete every monitor).",
)
@click.pass_context
def sync(ctx: click.Context, dry_run: bool, prune: bool, allow_empty: bool) -> None:
    """Create or update one monitor per beat entry, with its schedule, time zone and grace.

    Idempotent: running it again changes nothing. Exits 1 when a provider call
    failed or a monitor conflicts with another app's; warnings (entries whose
    schedule cannot be expressed) are printed but do not fail.
    """
    obj: Any = ctx.find_root().obj
    app = getattr(obj, "app", None)
    if app is None:
        raise click.UsageError("no Celery app: run it as `celery -A proj heartbeat sync`")
    no_color = bool(getattr(obj, "no_color", False))
    if allow_empty and not prune:
        raise click.UsageError("--allow-empty only makes sense with --prune")
    result = sync_monitors(app, dry_run=dry_run, prune=prune, allow_empty=allow_empty)
    for line in result.format().splitlines():
        color = "red" if line.startswith("error:") else "yellow" if line.startswith("warning:") else None
        color = _STYLES.get(line[:1], color)
        click.echo(line if no_color or color is None else click.style(line, fg=color), err=line.startswith("error:"))
    ctx.exit(0 if result.ok else 1)
