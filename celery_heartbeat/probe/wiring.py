"""Puts the probe bootsteps and receivers on one app (install) and takes them off (uninstall).

Adding bootsteps and connecting receivers starts nothing. The settings are read
when a worker or beat starts (the configuration may load after `install()`):
only with `heartbeat_probe_dir` or `heartbeat_probe_port` set do the writer
thread and the HTTP server start. Probes do not depend on `heartbeat_enabled`:
a deployment that turns pings off must not start failing its liveness probes.
The runtime objects of this process (recorder, writer, server) live here, and
this object lives in the app's `AppState`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from celery_heartbeat._state import AppState, peek
from celery_heartbeat.config.settings import Settings
from celery_heartbeat.probe import state
from celery_heartbeat.probe.beat import BeatProbe
from celery_heartbeat.probe.http import ProbeServer
from celery_heartbeat.probe.worker import ConsumerProbeStep, WorkerProbeStep, WorkerRecorder
from celery_heartbeat.probe.writer import StateWriter

logger = logging.getLogger("celery_heartbeat")

GROUP = "probes"


class ProbeWiring:
    """The probe side of one installed app."""

    def __init__(self, app_state: AppState) -> None:
        self.app_state = app_state
        self.worker: tuple[WorkerRecorder, StateWriter[state.WorkerState]] | None = None
        self.server: ProbeServer | None = None
        self.beat: BeatProbe | None = None
        attrs = {"wiring": self, "__module__": __name__}
        self._steps = (
            ("worker", type("HeartbeatProbe", (WorkerProbeStep,), {**attrs, "name": "celery_heartbeat.probe"})),
            ("consumer", type("HeartbeatProbeLoop", (ConsumerProbeStep,), {**attrs, "name": "celery_heartbeat.loop"})),
        )

    # -- what the settings say, read when a worker or beat starts --

    def _settings(self) -> Settings:
        return self.app_state.current_settings()

    @property
    def enabled(self) -> bool:
        settings = self._settings()
        return settings.probe_dir is not None or settings.probe_port is not None

    @property
    def directory(self) -> str | None:
        return self._settings().probe_dir

    # -- install / uninstall --

    def connect(self) -> None:
        app = self.app_state.app
        for blueprint, step in self._steps:
            app.steps[blueprint].add(step)
        self.app_state.connect(GROUP, signals.worker_shutdown, self._on_worker_shutdown)
        self.app_state.connect(GROUP, signals.beat_init, self._on_beat_init)
        self.app_state.connect(GROUP, signals.beat_embedded_init, self._on_beat_init)

    def disconnect(self) -> None:
        for blueprint, step in self._steps:
            self.app_state.app.steps[blueprint].discard(step)
        self.app_state.disconnect(GROUP)

    # -- at run time --

    def start_server(self, writer: StateWriter[state.WorkerState], judge: Any) -> None:
        port = self._settings().probe_port
        if port is None:
            return
        server = ProbeServer(port, lambda: writer.latest, judge)
        try:
            server.start()
        except OSError as exc:  # a taken port must not stop the worker; the HTTP probe will say so
            logger.error("celery-heartbeat: cannot serve /livez and /readyz on port %s: %s", port, exc)
            return
        self.server = server

    def _on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        # After the pool finished its tasks: a worker that stopped cleanly has no state file.
        try:
            if sender is not None and peek(getattr(sender, "app", None)) is not self.app_state:
                return
            worker, self.worker = self.worker, None
            if worker is not None:
                worker[1].close()
            server, self.server = self.server, None
            if server is not None:
                server.close()
        except Exception:
            logger.exception("celery-heartbeat: could not remove the probe state")

    def _on_beat_init(self, sender: Any = None, **_: Any) -> None:
        # Both beat_init and beat_embedded_init fire under `celery worker -B`: one beat probe.
        try:
            if peek(getattr(sender, "app", None)) is not self.app_state or self.beat is not None:
                return
            directory = self.directory
            if directory is None:
                return  # beat has no HTTP endpoint: only the file
            self.beat = BeatProbe(sender, state.beat_path(directory))
            self.beat.start()
        except Exception:
            logger.exception("celery-heartbeat: could not start the beat probe state")
