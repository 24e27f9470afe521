"""Beat liveness: a periodic ping that travels beat -> broker -> worker -> monitor.

When `celery beat` dies, workers stay healthy and idle and nothing raises
anywhere; a monitor that stops hearing this ping is the only thing that notices.
Each message expires after one period, so a backlog left by an outage never
fires a burst of stale pings that would make the dead period look alive.

The public entry point, `install_beat_liveness`, sits with `install()` in
`_heartbeat.py`; this module keeps the entry in the app's configuration and
(called from the app's `beat_init` receiver) in the running scheduler.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from celery_heartbeat._state import AppState, peek
from celery_heartbeat.beat.announcer import watch_for_duplicates
from celery_heartbeat.config.liveness import ENTRY_NAME, BeatLiveness

logger = logging.getLogger("celery_heartbeat")

__all__ = [
    "ENTRY_NAME",
    "BeatLiveness",
    "disable",
    "disable_leftover_entry",
    "enable",
    "entry_for",
    "liveness_of",
    "on_beat_start",
]


def liveness_of(app: Any) -> BeatLiveness | None:
    """The app's beat-liveness configuration, or None when it has none."""
    state = peek(app)
    return state.liveness if state is not None else None


def enable(state: AppState, liveness: BeatLiveness) -> None:
    """Keep `liveness` for the app: in `beat_schedule` now, and in the scheduler when beat starts."""
    state.liveness = liveness
    _apply_to_conf(state, liveness)


def disable(state: AppState) -> None:
    """Forget the app's beat liveness: its entry leaves `beat_schedule`."""
    state.liveness = None
    current = state.app.conf.beat_schedule or {}
    if ENTRY_NAME in current:
        state.app.conf.beat_schedule = {name: entry for name, entry in current.items() if name != ENTRY_NAME}


def _apply_to_conf(state: AppState, liveness: BeatLiveness) -> bool:
    """Put the entry into `app.conf.beat_schedule`; True when it had to be (re)added or changed.

    Assigns a new dict rather than mutating: the default schedule may be a dict
    shared with Celery's defaults.
    """
    current = state.app.conf.beat_schedule or {}
    entry = liveness.entry()
    if current.get(ENTRY_NAME) == entry:
        return False
    state.app.conf.beat_schedule = {**current, ENTRY_NAME: entry}
    return True


def entry_for(scheduler: Any, liveness: BeatLiveness) -> dict[str, Any]:
    """The entry in the form this scheduler stores: django-celery-beat keeps expiry as `expire_seconds`.

    (Its database entries silently drop an `expires` option, which would let a
    backlog burst after an outage.)
    """
    entry = liveness.entry()
    if _is_database_scheduler(scheduler):
        options = {k: v for k, v in entry["options"].items() if k != "expires"}
        options["expire_seconds"] = max(1, math.ceil(liveness.every))
        entry["options"] = options
        entry["enabled"] = True  # a row disabled while liveness was off must run again
    return entry


def _is_database_scheduler(scheduler: Any) -> bool:
    return type(scheduler).__module__.startswith("django_celery_beat")


def disable_leftover_entry(scheduler: Any) -> int:
    """Beat starts without beat liveness: disable the row a database scheduler kept from an earlier run.

    django-celery-beat keeps the entry in its table after `heartbeat_beat_url`
    is removed, so beat would go on sending a task no worker is set up to
    ping for. Saving the row (not a bulk update) tells the scheduler that its
    schedule changed. Returns the number of rows disabled.
    """
    if not _is_database_scheduler(scheduler):
        return 0
    disabled = 0
    for row in scheduler.Model.objects.filter(name=ENTRY_NAME, enabled=True):
        row.enabled = False
        row.save()
        disabled += 1
    if disabled:
        logger.info(
            "celery-heartbeat: beat liveness is off: disabled django-celery-beat's %r periodic task "
            "left from an earlier run",
            ENTRY_NAME,
        )
    return disabled


def on_beat_start(state: AppState, sender: Any) -> None:
    """Beat (`sender`, its service) is starting: make sure its scheduler has the entry, whatever happened."""
    try:
        liveness = state.liveness
        if liveness is None:
            # Only a scheduler beat has built (it has by beat_init): building one here would create
            # a schedule file in the working directory.
            scheduler = vars(sender).get("scheduler")
            if scheduler is not None:
                disable_leftover_entry(scheduler)  # (django-celery-beat keeps it in its table)
            return
        if _apply_to_conf(state, liveness):
            logger.warning(
                "celery-heartbeat: beat_schedule was replaced after install_beat_liveness(); re-added the %r entry",
                ENTRY_NAME,
            )
        # The service built its scheduler (and read beat_schedule) before sending beat_init.
        scheduler = sender.scheduler
        scheduler.update_from_dict({ENTRY_NAME: entry_for(scheduler, liveness)})
        logger.info("celery-heartbeat: beat liveness every %gs (%s)", liveness.every, ENTRY_NAME)
    except Exception:
        logger.exception("celery-heartbeat: could not add the beat-liveness entry to the scheduler")
        return
    try:
        if state.current_settings().detect_duplicate_beats:
            watch_for_duplicates(state, liveness.every, liveness.queue)
    except Exception:
        logger.exception("celery-heartbeat: could not start duplicate-beat detection (the schedule is unaffected)")
