"""Prefork pool processes hand their run events to the worker's main process, which owns the one sender.

Why: with a sender per child, each child retried on its own jittered backoff, so
after an outage a stale success queued in one child could land after a newer
failure from another: the monitor ended "up" although the last run failed.
Here every event goes, in the order it happened, through one local channel (an
AF_UNIX datagram socket pair made in the main process before the pool forks, so
every child inherits it, re-forked ones too) to a reader thread in the main
process, which decides coalescing for the whole worker and submits to its sender.

A hand-over never blocks and never fails a task: the send is non-blocking, and
one that fails (channel full or gone, no channel: solo, threads, gevent,
eventlet) leaves the event to the caller, which decides and sends it in its own
process. A run stays whole across that fallback: a run whose start was decided
locally finishes locally, and a finish whose start went to the main process but
which could not follow it is sent unconditionally (a start that went out always
gets its finish). The main process's own events (hard time limits, lost
workers, terminated revokes) take the same channel, behind what the children
sent before them.

A pool process hands over at most one success per monitor and coalescing
window at once (the first); later successes inside its window are held, the
latest one only, and handed over when the window ends (or when the process
exits). On a busy pool this keeps the main process's work per window, not per
task. The main process drops a success older than a failure it already decided
(`RunBook.success`), so a held success can never land after a newer failure; a
pool process's own failure discards what it held, and after a failure anywhere
in the worker (a counter in memory shared by its processes) each pool process
sends its next success at once, so a monitor does not stay "down" for a window
after the task recovered. Runs with start pings never wait: their finish
follows their start.

An event on the wire is one short line of text: the monitor, kind, run id,
retry count, failure detail (an exception type name) and the event's monotonic
time (the clock is system-wide, so the main process keeps the event's age);
never task arguments or results.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import mmap
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.config.providers import PROVIDERS, Kind

logger = logging.getLogger("celery_heartbeat")

THREAD_NAME = "celery-heartbeat-handover"
RELEASE_THREAD_NAME = "celery-heartbeat-held"

SEND_BUFFER = 1 << 20
"""Bytes of events the channel holds before a hand-over fails over to the child's own sender."""

MAX_EVENT = 16 * 1024
"""The largest event read; a longer one (an absurd URL) is sent by its own process instead."""

CAPACITY = 10_000
"""Runs remembered per pool process for routing their finish; bounds memory like RunBook."""

BATCH_PAUSE = 0.05
"""Seconds the reader rests after a burst: the most it delays a ping, and what bounds its wake-ups.

The main process is a prefork worker's busiest; at 5 ms a busy pool woke the reader about once per
event, and the wake-ups cost it more than the events (measured: 190 us of main-process CPU per task
at 5 ms, 35 us at 50 ms). A heartbeat 50 ms later changes nothing a monitor sees."""

BATCH_MAX = 1000
"""Events read in one burst."""

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_STOP = b"\x00stop"
_BARRIER = b"\x00sync"
_KINDS: dict[str, Kind] = {"start": "start", "success": "success", "failure": "failure"}
_SEP = "\x1f"  # ASCII unit separator
_FIELDS = 9
_FLAGS: dict[bool | None, str] = {None: "", True: "1", False: "0"}
_UNFLAG: dict[str, bool | None] = {flag: value for value, flag in _FLAGS.items()}


@dataclass(frozen=True)
class RunEvent:
    """Something that happened to one run, as the process that saw it resolved it."""

    kind: Kind
    monitor: Monitor
    run_id: str
    retries: int = 0
    detail: str | None = None
    #: ``time.monotonic()`` when it happened, in whichever process.
    created: float = field(default_factory=time.monotonic)

    def encode(self) -> bytes:
        """One datagram: the fields joined by a separator no URL, task id or type name contains.

        Raises ValueError when a field does contain it (the event is then sent by its own process).
        """
        m = self.monitor
        fields = (self.kind, m.url, m.provider, _FLAGS[m.start], _FLAGS[m.failure], self.run_id)
        text = _SEP.join((*fields, str(self.retries), self.detail or "", repr(self.created)))
        if text.count(_SEP) != _FIELDS - 1:
            raise ValueError("a field contains the separator")
        return text.encode()

    @classmethod
    def decode(cls, data: bytes) -> RunEvent | None:
        """The event, or None when the bytes are not one (never raises)."""
        try:
            kind, url, provider, start, failure, run_id, retries, detail, created = data.decode().split(_SEP)
            if kind not in _KINDS or provider not in PROVIDERS or start not in _UNFLAG or failure not in _UNFLAG:
                return None
            monitor = Monitor(url=url, provider=provider, start=_UNFLAG[start], failure=_UNFLAG[failure])
            return cls(_KINDS[kind], monitor, run_id, int(retries), detail or None, float(created))
        except (ValueError, UnicodeDecodeError):
            return None


class Route(enum.Enum):
    """Where an offered event went."""

    HANDED = "handed"  # to the main process
    LOCAL = "local"  # decide and send it here
    OWED = "owed"  # send it here, whatever this process's coalescing says: its start went out elsewhere


def _reset_after_fork(ref: weakref.ref[Handover]) -> Callable[[], None]:
    def reset() -> None:
        handover = ref()
        if handover is not None:
            handover._after_fork()

    return reset


@dataclass
class _Held:
    event: RunEvent
    due: float  # when this process's window for the monitor ends


class Handover:
    """One app's channel from pool processes to the main process; `apply` decides and submits there.

    `apply` must work in any process: the main process applies what it reads with it, and a pool
    process applies a held success with it when the channel refuses it (decided there instead).
    """

    def __init__(self, apply: Callable[[RunEvent], None]) -> None:
        self._apply = apply
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._owner = 0  # pid of the main process once open
        self._send: socket.socket | None = None
        self._recv: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._routes: OrderedDict[str, bool] = OrderedDict()  # run id -> its start was handed over
        #: URL -> when this pool process last handed a success over at once, and the failure count then.
        self._handed_at: dict[str, tuple[float, int]] = {}
        #: A counter every process of the worker bumps on a failure (shared memory made before the forks):
        #: after any failure, each pool process hands its next success over at once.
        self._failures: memoryview | None = None
        self._held: dict[str, _Held] = {}  # URL -> the latest success held back in this pool process
        self._wake = threading.Condition(self._lock)
        self._releaser: threading.Thread | None = None
        self._barriers_sent = 0
        self._barriers_seen = 0
        self._bug_logged = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_after_fork(weakref.ref(self)))

    @property
    def active(self) -> bool:
        """Whether this process hands events over (the main process included) right now."""
        return self._send is not None

    # -- main process -------------------------------------------------------------------

    def open(self) -> None:
        """Make the channel and start its reader; idempotent. Call in the main process before forking."""
        with self._lock:
            if self._owner == os.getpid() or not hasattr(socket, "AF_UNIX"):
                return
            recv, send = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):  # the system default works too, it just fills sooner
                send.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            send.setblocking(False)
            if self._failures is None:
                self._failures = memoryview(mmap.mmap(-1, 8)).cast("Q")  # anonymous and shared with children
            thread = threading.Thread(target=self._read, args=(recv,), name=THREAD_NAME, daemon=True)
            thread.start()
            self._owner, self._send, self._recv, self._thread = os.getpid(), send, recv, thread

    def _read(self, recv: socket.socket) -> None:
        """Apply events in arrival order. After each burst, pause briefly: events sent meanwhile wait
        in the channel without waking this thread, so a busy pool pays one wake-up per burst, not per event."""
        while True:
            batch: list[bytes] = []
            try:
                batch.append(recv.recv(MAX_EVENT))
                while _DONTWAIT and len(batch) < BATCH_MAX:
                    batch.append(recv.recv(MAX_EVENT, _DONTWAIT))
            except BlockingIOError:
                pass
            except OSError:
                return
            for data in batch:
                if not self._handle(data):
                    return
            time.sleep(BATCH_PAUSE)

    def _handle(self, data: bytes) -> bool:
        """Apply one message; False: stop reading."""
        if data == _STOP or not data:
            return False
        if data == _BARRIER:
            with self._cond:
                self._barriers_seen += 1
                self._cond.notify_all()
            return True
        event = RunEvent.decode(data)
        if event is None:
            self._log_bug("an unreadable event", exc_info=False)
            return True
        try:
            self._apply(event)
        except Exception:
            self._log_bug("applying an event")
        return True

    def drain(self, timeout: float) -> bool:
        """Wait until every event handed over so far was applied (main process); True when done."""
        if self._owner != os.getpid() or self._send is None:
            return True
        with self._cond:
            self._barriers_sent += 1
            wanted = self._barriers_sent
        if not self._send_blocking(_BARRIER, time.monotonic() + max(0.0, timeout)):
            return False
        with self._cond:
            return self._cond.wait_for(lambda: self._barriers_seen >= wanted, timeout=max(0.0, timeout))

    def close(self, timeout: float) -> bool:
        """Apply what was handed over, then stop the reader (main process); later events stay local.

        True when the reader finished within `timeout` seconds.
        """
        if self._owner != os.getpid():
            return True
        send, thread = self._send, self._thread
        self._send = None  # from now on, events of this process are decided here
        if send is None or thread is None:
            return True
        end = time.monotonic() + max(0.0, timeout)
        if self._send_blocking(_STOP, end, send):
            thread.join(max(0.0, end - time.monotonic()))
        if thread.is_alive():
            return False
        with self._lock:
            self._thread = None
            for sock in (send, self._recv):
                if sock is not None:
                    sock.close()
            self._recv = None
        return True

    def _send_blocking(self, data: bytes, end: float, send: socket.socket | None = None) -> bool:
        """Send a control message, waiting for room in the channel until `end`."""
        sock = send or self._send
        while sock is not None:
            try:
                sock.send(data)
                return True
            except BlockingIOError:
                if time.monotonic() >= end:
                    return False
                time.sleep(0.005)
            except OSError:
                return False
        return False

    # -- any process (the task's thread: never blocks) ----------------------------------

    def offer(self, event: RunEvent, window: float = 0.0) -> Route:
        """Hand an event to the main process if this process can; else say how to send it here.

        `window`: the coalescing window; a pool process holds successes back inside it.
        """
        send = self._send
        if send is None:
            return Route.LOCAL
        child = self._owner != os.getpid()
        handed_start: bool | None = None  # None: this run sent no start event
        if child and event.kind != "start":
            if self._routes:
                with self._lock:
                    handed_start = self._routes.pop(event.run_id, None)
                if handed_start is False:  # its start was decided here: so is its finish
                    return Route.LOCAL
            if handed_start is None and self._hold(event, window):
                return Route.HANDED  # held: it goes over when this process's window ends
        if event.kind == "failure" and self._failures is not None:
            self._failures[0] += 1  # not atomic: it only has to change
        handed = self._send_event(send, event)
        if child and event.kind == "start":
            self._remember(event.run_id, handed=handed)
        if handed:
            return Route.HANDED
        # A pool process's finish whose start went (or may have gone) to the main process.
        return Route.OWED if handed_start else Route.LOCAL

    def _send_event(self, send: socket.socket, event: RunEvent) -> bool:
        try:
            send.send(event.encode())
            return True
        except (OSError, ValueError):  # full, gone, too long or unencodable: never wait, never fail the task
            return False
        except Exception:
            self._log_bug("handing an event over")
            return False

    def _hold(self, event: RunEvent, window: float) -> bool:
        """A pool process's finish without a start: whether to hold it back (True) or send it now."""
        url = event.monitor.url
        failures = self._failures[0] if self._failures is not None else 0
        with self._lock:
            if event.kind == "failure":  # what was held is older than this failure: it never follows it
                self._held.pop(url, None)
                self._handed_at.pop(url, None)
                return False
            last, seen = self._handed_at.get(url, (None, failures))
            if window > 0 and last is not None and seen == failures and event.created - last < window:
                new_due = url not in self._held  # a replaced one keeps its due time: no wake-up per task
                self._held[url] = _Held(event, last + window)
                if new_due and self._releaser is None:
                    self._releaser = threading.Thread(target=self._release_loop, name=RELEASE_THREAD_NAME, daemon=True)
                    self._releaser.start()
                elif new_due:
                    self._wake.notify()
                return True
            self._handed_at[url] = (event.created, failures)
            self._held.pop(url, None)  # older than this one, which goes now
            return False

    def _release_loop(self) -> None:
        """A pool process's thread: hand held successes over when their window ends; exit when none is left."""
        while True:
            with self._lock:
                while True:
                    if not self._held:
                        self._releaser = None
                        return
                    now = time.monotonic()
                    ready = [url for url, held in self._held.items() if held.due <= now]
                    if ready:
                        events = [self._held.pop(url).event for url in ready]
                        break
                    self._wake.wait(min(held.due for held in self._held.values()) - now)
            self._release(events)

    def release_held(self) -> None:
        """Hand over everything held now (a pool process about to exit)."""
        with self._lock:
            events = [held.event for held in self._held.values()]
            self._held.clear()
        self._release(events)

    def _release(self, events: list[RunEvent]) -> None:
        send = self._send
        for event in events:
            if send is None or not self._send_event(send, event):
                try:
                    self._apply(event)  # decided in this process instead
                except Exception:
                    self._log_bug("applying a held event")

    def _remember(self, run_id: str, *, handed: bool) -> None:
        with self._lock:
            self._routes[run_id] = handed
            self._routes.move_to_end(run_id)
            if len(self._routes) > CAPACITY:
                self._routes.popitem(last=False)

    def _after_fork(self) -> None:
        """In a new process: fresh locks, no reader, and no copy of the reading end to keep alive."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._wake = threading.Condition(self._lock)
        self._routes = OrderedDict()
        self._handed_at = {}
        self._held = {}
        self._releaser = None
        self._thread = None
        recv, self._recv = self._recv, None
        if recv is not None:
            with contextlib.suppress(OSError):
                recv.close()

    def _log_bug(self, where: str, *, exc_info: bool = True) -> None:
        if not self._bug_logged:
            self._bug_logged = True
            message = "celery-heartbeat: internal error in the hand-over (%s; tasks are unaffected)"
            logger.error(message, where, exc_info=exc_info)
