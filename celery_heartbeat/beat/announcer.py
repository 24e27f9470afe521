"""Beats hear each other: a kombu fanout exchange per schedule, on the broker beat already uses.

Each beat binds its own short-lived queue (exclusive and auto-deleted on
RabbitMQ, a pub/sub subscription on Redis) and publishes one small announcement
per beat-liveness dispatch, so the cost is a message per beat per period
whatever the task volume. One daemon thread owns the connection: it publishes
and listens; beat's own thread only hands it the latest announcement, so a slow
broker never delays the schedule. Started at `beat_init`, never at install.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import socket
import threading
from typing import Any

from celery import Celery, signals
from kombu.entity import Exchange, Queue
from kombu.messaging import Consumer, Producer

from celery_heartbeat._state import AppState
from celery_heartbeat.beat.duplicates import HEADER, Announcement, BeatInstance, DuplicateDetector
from celery_heartbeat.config.names import BEAT_TASK

logger = logging.getLogger("celery_heartbeat")

EXCHANGE_PREFIX = "celery_heartbeat.beats."
STOP_TIMEOUT = 1.0


def exchange_name(app: Celery, queue: str | None) -> str:
    """One exchange per schedule: the app's name and the queue its liveness messages go to."""
    target = queue or app.conf.task_default_queue or "celery"
    return f"{EXCHANGE_PREFIX}{app.main or '__main__'}.{target}"


class Announcer:
    """The fanout link of one beat process: publish our announcements, feed others' to the detector."""

    def __init__(self, app: Celery, detector: DuplicateDetector, exchange: str) -> None:
        self.app = app
        self.detector = detector
        self.exchange = Exchange(exchange, type="fanout", durable=False, auto_delete=True)  # type: ignore[no-untyped-call]
        self.queue = Queue(  # type: ignore[no-untyped-call]
            f"{exchange}.{detector.me.id}",
            self.exchange,
            durable=False,
            auto_delete=True,
            exclusive=True,
            message_ttl=detector.period,
        )
        # How long the thread blocks on the broker before it looks for an announcement to send
        # (and for the stop request: a beat's exit waits at most this long for the cleanup).
        self.poll = min(0.25, detector.period / 10)
        self._outbox: Announcement | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trouble: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="celery-heartbeat-beats", daemon=True)
        self._thread.start()

    def announce(self, announcement: Announcement) -> None:
        """Hand over the latest announcement (never blocks; an unsent older one is superseded)."""
        with self._lock:
            self._outbox = announcement

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self) -> Announcement | None:
        with self._lock:
            announcement, self._outbox = self._outbox, None
            return announcement

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.app.connection_for_write() as conn:
                    conn.ensure_connection(max_retries=1)
                    self._serve(conn)
            except Exception as exc:
                self._report(f"{type(exc).__name__}: {exc}")
                self._stop.wait(min(5.0, self.detector.period))

    def _serve(self, conn: Any) -> None:
        channel = conn.channel()
        producer: Any = Producer(channel, exchange=self.exchange, serializer="json")  # type: ignore[no-untyped-call]
        consumer: Any = Consumer(  # type: ignore[no-untyped-call]
            channel, queues=[self.queue], callbacks=[self._on_message], accept=["json"], no_ack=True
        )
        with consumer:
            self._report(None)
            while not self._stop.is_set():
                self._publish(producer)
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=self.poll)
            self._publish(producer)  # the last dispatch before beat stopped counts too
        channel.close()

    def _publish(self, producer: Any) -> None:
        announcement = self._take()
        if announcement is not None:
            producer.publish(
                announcement.to_body(),
                exchange=self.exchange,
                routing_key="",
                expiration=self.detector.period,
                retry=False,
            )

    def _on_message(self, body: Any, message: Any) -> None:
        try:
            announcement = Announcement.from_body(body)
            if announcement is not None and self.detector.heard(announcement):
                logger.info(
                    "celery-heartbeat: heard beat %s dispatch this schedule (this beat is %s)",
                    announcement.beat.label,
                    self.detector.me.label,
                )
        except Exception:
            logger.exception("celery-heartbeat: could not read a beat announcement")

    def _report(self, trouble: str | None) -> None:
        """Log broker trouble once when it starts and once when it ends."""
        if trouble == self._trouble:
            return
        if trouble is not None and self._trouble is None:
            logger.warning("celery-heartbeat: duplicate-beat detection cannot reach the broker: %s", trouble)
        elif trouble is None:
            logger.info("celery-heartbeat: duplicate-beat detection reconnected")
        self._trouble = trouble


class DispatchHook:
    """`before_task_publish` for the liveness task in a beat process: decide, mark the message, announce."""

    def __init__(self, detector: DuplicateDetector, announcer: Announcer) -> None:
        self.detector = detector
        self.announcer = announcer
        self._failed = False

    def __call__(self, sender: Any = None, headers: Any = None, **_: Any) -> None:
        if sender != BEAT_TASK:
            return
        try:
            verdict = self.detector.dispatching()
            self.announcer.announce(verdict.announcement)
            marks = verdict.header()
            if marks is not None and isinstance(headers, dict):
                headers[HEADER] = marks
            for beat in verdict.appeared:
                logger.error(
                    "celery-heartbeat: duplicate celery beat: %s also dispatches this schedule (this beat is %s); "
                    "every periodic task is sent twice. Stop all but one beat.",
                    beat.label,
                    self.detector.me.label,
                )
            for beat in verdict.gone:
                logger.warning("celery-heartbeat: the duplicate beat %s no longer dispatches this schedule", beat.label)
        except Exception:
            if not self._failed:
                self._failed = True
                logger.exception("celery-heartbeat: duplicate-beat detection failed (the schedule is unaffected)")


class BeatWatch:
    """Detection for one app in this beat process: the detector, its announcer and its publish hook."""

    def __init__(self, state: AppState, period: float, queue: str | None) -> None:
        self.state = state
        self.detector = DuplicateDetector(BeatInstance.current(), period)
        self.announcer = Announcer(state.app, self.detector, exchange_name(state.app, queue))
        self.hook = DispatchHook(self.detector, self.announcer)

    def start(self) -> None:
        # In the app's receiver list, so uninstall() disconnects it with the rest.
        self.state.connect("duplicate_beats", signals.before_task_publish, self.hook)
        self.announcer.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        self.state.disconnect("duplicate_beats")
        self.announcer.stop()
        atexit.unregister(self.stop)


def watch_for_duplicates(state: AppState, period: float, queue: str | None) -> BeatWatch | None:
    """Start detection in this beat process (at `beat_init`); None when the broker has no fanout exchanges."""
    previous = state.beat_watch
    if isinstance(previous, BeatWatch):
        previous.stop()
    state.beat_watch = None
    with state.app.connection_for_write() as conn:
        if "fanout" not in conn.transport.implements.exchange_type:
            logger.warning(
                "celery-heartbeat: duplicate-beat detection needs fanout exchanges, which the %s transport lacks: off",
                conn.transport_cls,
            )
            return None
    watch = BeatWatch(state, period, queue)
    state.beat_watch = watch
    watch.start()
    logger.info("celery-heartbeat: duplicate-beat detection on (this beat is %s)", watch.detector.me.label)
    return watch
