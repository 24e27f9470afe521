"""Background delivery: enqueue is O(1) and never blocks; one daemon thread sends.

Modelled on sentry-python's BackgroundWorker: a thread started lazily, restarted
after fork with fresh locks (a prefork child never inherits a held lock or its
parent's pending pings), a timed flush for shutdown. Pending pings coalesce per
(URL, kind), so memory is bounded by monitors x kinds whatever the task rate and
however long an endpoint stays down.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from celery_heartbeat._delivery import DeliveryPolicy, Outcome, Result, deliver
from celery_heartbeat._ping import Ping
from celery_heartbeat._redact import redact
from celery_heartbeat._transport import RequestsTransport, Transport

logger = logging.getLogger("celery_heartbeat")

THREAD_NAME = "celery-heartbeat-sender"


class Sender(Protocol):
    """Where hooks hand pings. `submit` must never block and never raise."""

    def submit(self, ping: Ping) -> bool: ...

    def flush(self, timeout: float) -> bool: ...

    def stats(self) -> dict[str, int]: ...

    def close(self, timeout: float = 0.0) -> None: ...


@dataclass
class _UrlHealth:
    failing: bool = False
    failures: int = 0
    next_try: float = 0.0
    failed_at: float = 0.0


@dataclass(frozen=True)
class SenderConfig:
    policy: DeliveryPolicy
    max_age: float = 600.0
    backoff_max: float = 30.0


_COUNTERS = ("sent", "failed", "rejected", "retried", "coalesced", "dropped")


class BackgroundSender:
    """The per-process sender. Thread-safe; fork-safe; greenlet-safe under monkeypatching."""

    def __init__(self, config: SenderConfig, transport_factory: type[Transport] = RequestsTransport) -> None:
        self._config = config
        self._transport_factory = transport_factory
        self._reset()
        ref = weakref.ref(self)

        def after_fork() -> None:
            sender = ref()
            if sender is not None:
                sender._reset()

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=after_fork)
        self._atexit_registered = False

    def _reset(self) -> None:
        """Fresh state for this process: new locks, nothing pending, no thread yet."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: OrderedDict[tuple[str, str], Ping] = OrderedDict()
        self._health: dict[str, _UrlHealth] = {}
        self._in_flight = 0
        self._deadline: float | None = None
        self._flush_started = 0.0
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = None
        self._counts = dict.fromkeys(_COUNTERS, 0)

    # -- producer side (task threads) -------------------------------------------------

    def submit(self, ping: Ping) -> bool:
        if self._pid != os.getpid():  # fork without register_at_fork (or a race with it)
            self._reset()
        with self._lock:
            if self._closed:
                self._counts["dropped"] += 1
                return False
            if self._pending.pop(ping.key, None) is not None:
                self._counts["coalesced"] += 1
            self._pending[ping.key] = ping
            if self._thread is None:
                self._start()
            self._cond.notify()
        return True

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread = thread
        thread.start()
        if not self._atexit_registered:
            self._atexit_registered = True
            ref = weakref.ref(self)

            def at_exit() -> None:
                sender = ref()
                if sender is not None:
                    sender.flush(sender._config.policy.timeout)

            atexit.register(at_exit)

    # -- consumer side (the sender thread) --------------------------------------------

    def _next(self) -> Ping | None:
        """The oldest pending ping whose URL is not backing off; waits for one. None: stop."""
        with self._cond:
            while True:
                if self._closed and not self._pending:
                    return None
                now = time.monotonic()
                wait: float | None = None
                for key, ping in self._pending.items():
                    delay = self._blocked_for(ping, now)
                    if delay <= 0:
                        del self._pending[key]
                        self._in_flight += 1
                        return ping
                    wait = delay if wait is None else min(wait, delay)
                self._cond.wait(wait)

    def _blocked_for(self, ping: Ping, now: float) -> float:
        """Seconds until this ping's URL may be tried again; a flush retries each URL once."""
        health = self._health.get(ping.monitor.url)
        if health is None or health.next_try <= now:
            return 0.0
        if self._deadline is not None and health.failed_at < self._flush_started:
            return 0.0
        return health.next_try - now

    def _run(self) -> None:
        if self._transport is None:
            self._transport = self._transport_factory()
        while True:
            ping = self._next()
            if ping is None:
                return
            try:
                self._process(ping)
            except Exception:  # never let the thread die: later pings still matter
                logger.exception("celery-heartbeat: unexpected error delivering a ping")
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _process(self, ping: Ping) -> None:
        age = time.monotonic() - ping.created
        request = ping.request()
        if request is None or (ping.kind != "failure" and age > self._config.max_age):
            # A very late success ping would make a monitor look healthy at the wrong time.
            with self._cond:
                self._in_flight -= 1
                self._counts["dropped"] += 1
                self._cond.notify_all()
            return
        assert self._transport is not None
        outcome = deliver(
            self._transport,
            request,
            self._config.policy,
            deadline=lambda: self._deadline,
            sleep=self._sleep,
        )
        self._record(ping, outcome)

    def _sleep(self, seconds: float) -> None:
        """Backoff sleep that a flush or close cuts short."""
        self._wake.wait(seconds)

    def _record(self, ping: Ping, outcome: Outcome) -> None:
        url = ping.monitor.url
        with self._cond:
            self._in_flight -= 1
            self._counts["retried"] += max(0, outcome.attempts - 1)
            health = self._health.setdefault(url, _UrlHealth())
            if outcome.result is Result.SENT:
                self._counts["sent"] += 1
                recovered = health.failing
                health.failing, health.failures, health.next_try = False, 0, 0.0
                self._cond.notify_all()
                if recovered:
                    logger.warning("celery-heartbeat: %s is answering again", redact(url))
                return
            first = not health.failing
            health.failing = True
            if outcome.result is Result.REJECTED:
                self._counts["rejected"] += 1
                self._cond.notify_all()
            else:
                self._counts["failed"] += 1
                health.failures += 1
                health.failed_at = time.monotonic()
                pause = min(
                    self._config.backoff_max,
                    self._config.policy.backoff_initial * 2**health.failures,
                )
                health.next_try = time.monotonic() + pause
                # Keep it for a later try unless a newer ping of the same kind replaced it.
                if ping.key in self._pending:
                    self._counts["coalesced"] += 1
                elif self._closed:
                    self._counts["dropped"] += 1
                else:
                    self._pending[ping.key] = ping
                    self._pending.move_to_end(ping.key, last=False)
                self._cond.notify_all()
        if first:
            logger.warning(
                "celery-heartbeat: cannot deliver pings to %s (%s); tasks are unaffected, "
                "pings are kept and retried",
                redact(url),
                outcome.error,
            )

    # -- lifecycle ----------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until everything pending is delivered (or given up), at most `timeout` seconds."""
        if self._pid != os.getpid():
            self._reset()
            return True
        end = time.monotonic() + max(0.0, timeout)
        with self._cond:
            if self._thread is None and not self._pending:
                return True
            if self._deadline is None:
                self._flush_started = time.monotonic()
            self._deadline = end if self._deadline is None else min(self._deadline, end)
            self._wake.set()
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    now = time.monotonic()
                    if now >= end:
                        return False
                    if not self._in_flight and all(
                        self._blocked_for(p, now) > 0 for p in self._pending.values()
                    ):
                        return False  # everything left already failed during this flush
                    self._cond.wait(end - now)
                return True
            finally:
                self._deadline = None
                self._wake.clear()

    def close(self, timeout: float = 0.0) -> None:
        """Flush for at most `timeout`, then stop the thread; pings still pending are counted dropped."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._counts["dropped"] += len(self._pending)
            self._pending.clear()
            self._wake.set()
            self._cond.notify_all()
        if self._transport is not None and self._thread is None:
            self._transport.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counts)
            out["pending"] = len(self._pending) + self._in_flight
        return out
