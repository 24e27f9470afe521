"""Beat liveness: a periodic ping that travels beat -> broker -> worker -> monitor.

When `celery beat` dies, workers stay healthy and idle and nothing raises
anywhere; a monitor that stops hearing this ping is the only thing that notices.
Each message expires after one period, so a backlog left by an outage never
fires a burst of stale pings that would make the dead period look alive.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery, signals

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat._tasks import BEAT_TASK
from celery_heartbeat.config.monitor import Monitor, MonitorSpec, parse_monitor

logger = logging.getLogger("celery_heartbeat")

ENTRY_NAME = "celery-heartbeat-beat-liveness"
_ATTR = "_celery_heartbeat_beat"
_BEAT_INIT_UID = "celery_heartbeat:beat_init"


@dataclass(frozen=True)
class BeatLiveness:
    """One app's beat-liveness monitor and period (kept on the app: workers resolve the URL there)."""

    monitor: Monitor
    every: float
    queue: str | None = None

    def entry(self) -> dict[str, Any]:
        """The `beat_schedule` entry. It carries no URL: schedule stores and messages stay secret-free."""
        options: dict[str, Any] = {"expires": self.every}
        if self.queue is not None:
            options["queue"] = self.queue
        return {"task": BEAT_TASK, "schedule": timedelta(seconds=self.every), "options": options}


def liveness_of(app: Celery) -> BeatLiveness | None:
    """The app's beat-liveness configuration, or None when it has none."""
    liveness: BeatLiveness | None = getattr(app, _ATTR, None)
    return liveness


def _check_every(every: object) -> float:
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every > 0:
        raise ConfigurationError("every", every, "expected a number of seconds > 0")
    if every != every or every == float("inf"):
        raise ConfigurationError("every", every, "expected a finite number of seconds > 0")
    return float(every)


def install_beat_liveness(app: Celery, url: MonitorSpec, every: float = 60.0, *, queue: str | None = None) -> None:
    """Add a `beat_schedule` entry that pings `url` through a worker every `every` seconds.

    The entry is also re-applied when beat starts (`beat_init`), so a later
    `app.conf.beat_schedule = {...}` cannot silently drop it; with a database or
    Redis scheduler it is written to that store then. `url` None or "" (an
    unset environment variable) disables it quietly, as in `heartbeat_urls`.
    `url` may also be a name from `heartbeat_urls`. Installs the app first when
    `install()` was not called yet.
    """
    from celery_heartbeat._heartbeat import install, installed

    period = _check_every(every)
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ConfigurationError("queue", queue, "expected a queue name or None")
    handle = installed(app) or install(app)
    if isinstance(url, str) and url and "://" not in url:
        # A name from heartbeat_urls, as the canvas helpers accept.
        monitor = handle.registry.by_name(url)
        if monitor is None:
            raise ConfigurationError("heartbeat_beat_url", url, "not a URL, and no heartbeat_urls entry of that name")
    else:
        monitor = parse_monitor("heartbeat_beat_url", url)
    if monitor is None or not handle.settings.enabled:
        return
    liveness = BeatLiveness(monitor, period, queue)
    setattr(app, _ATTR, liveness)
    _apply_to_conf(app, liveness)
    # One receiver for every app: it finds the configuration on the beat service's app.
    signals.beat_init.connect(_on_beat_init, weak=False, dispatch_uid=_BEAT_INIT_UID)


def _apply_to_conf(app: Celery, liveness: BeatLiveness) -> bool:
    """Put the entry into `app.conf.beat_schedule`; True when it had to be (re)added or changed.

    Assigns a new dict rather than mutating: the default schedule may be a dict
    shared with Celery's defaults.
    """
    current = app.conf.beat_schedule or {}
    entry = liveness.entry()
    if current.get(ENTRY_NAME) == entry:
        return False
    app.conf.beat_schedule = {**current, ENTRY_NAME: entry}
    return True


def entry_for(scheduler: Any, liveness: BeatLiveness) -> dict[str, Any]:
    """The entry in the form this scheduler stores: django-celery-beat keeps expiry as `expire_seconds`.

    (Its database entries silently drop an `expires` option, which would let a
    backlog burst after an outage.)
    """
    entry = liveness.entry()
    if type(scheduler).__module__.startswith("django_celery_beat"):
        options = {k: v for k, v in entry["options"].items() if k != "expires"}
        options["expire_seconds"] = max(1, math.ceil(liveness.every))
        entry["options"] = options
    return entry


def _on_beat_init(sender: Any = None, **_: Any) -> None:
    """Beat is starting: make sure its scheduler has the entry, whatever happened to the config."""
    try:
        app = getattr(sender, "app", None)
        liveness = liveness_of(app) if app is not None else None
        if liveness is None:
            return
        if _apply_to_conf(app, liveness):
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
