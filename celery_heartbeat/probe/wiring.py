"""Puts the probe bootsteps and receivers on one app (install) and takes them off (uninstall).

Adding bootsteps and connecting receivers starts nothing: the writer thread and
the HTTP server start when a worker or beat starts, and only when
`heartbeat_probe_dir` or `heartbeat_probe_port` is set.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from celery_heartbeat.probe import state
from celery_heartbeat.probe.beat import BeatProbe
from celery_heartbeat.probe.http import ProbeServer
from celery_heartbeat.probe.worker import ConsumerProbeStep, WorkerProbeStep, WorkerRecorder
from celery_heartbeat.probe.writer import StateWriter

logger = logging.getLogger("celery_heartbeat")


class ProbeWiring:
    """The probe side of one installed app; holds this process's recorder, writer and server."""

    def __init__(self, app: Celery, directory: str | None, port: int | None) -> None:
        self.app = app
        self.directory = directory
        self.port = port
        self.worker: tuple[WorkerRecorder, StateWriter[state.WorkerState]] | None = None
        self.server: ProbeServer | None = None
        self.beat: BeatProbe | None = None
        attrs = {"wiring": self, "__module__": __name__}
        self._steps = (
            ("worker", type("HeartbeatProbe", (WorkerProbeStep,), {**attrs, "name": "celery_heartbeat.probe"})),
            ("consumer", type("HeartbeatProbeLoop", (ConsumerProbeStep,), {**attrs, "name": "celery_heartbeat.loop"})),
        )
        self._uid = f"celery_heartbeat.probe:{id(app)}"

    @property
    def enabled(self) -> bool:
        return self.directory is not None or self.port is not None

    def connect(self) -> None:
        if not self.enabled:
            return
        for blueprint, step in self._steps:
            self.app.steps[blueprint].add(step)
        signals.worker_shutdown.connect(self._on_worker_shutdown, weak=False, dispatch_uid=self._uid)
        if self.directory is not None:  # beat has no HTTP endpoint: only the file
            for signal in (signals.beat_init, signals.beat_embedded_init):
                signal.connect(self._on_beat_init, weak=False, dispatch_uid=self._uid)

    def disconnect(self) -> None:
        for blueprint, step in self._steps:
            self.app.steps[blueprint].discard(step)
        for signal in (signals.worker_shutdown, signals.beat_init, signals.beat_embedded_init):
            signal.disconnect(dispatch_uid=self._uid)

    def start_server(self, writer: StateWriter[state.WorkerState], judge: Any) -> None:
        if self.port is None:
            return
        server = ProbeServer(self.port, lambda: writer.latest, judge)
        try:
            server.start()
        except OSError as exc:  # a taken port must not stop the worker; the HTTP probe will say so
            logger.error("celery-heartbeat: cannot serve /livez and /readyz on port %s: %s", self.port, exc)
            return
        self.server = server

    def _on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        # After the pool finished its tasks: a worker that stopped cleanly has no state file.
        try:
            if getattr(sender, "app", self.app) is not self.app:
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
        try:
            if getattr(sender, "app", None) is not self.app or self.directory is None:
                return
            self.beat = BeatProbe(sender, state.beat_path(self.directory))
            self.beat.start()
        except Exception:
            logger.exception("celery-heartbeat: could not start the beat probe state")
