"""The per-process background sender: submit is O(1) and never blocks; a few threads deliver.

Modelled on sentry-python's BackgroundWorker: threads started lazily (and again
after fork, with fresh locks: a prefork child never inherits a held lock or its
parent's pending pings), a timed flush for shutdown, idle threads that exit on
their own. Under gevent or eventlet the monkey-patched `threading` makes the
threads greenlets and the locks cooperative.

One dispatcher thread asks the `Scheduler` what may go next (per-monitor order,
bounded concurrency, per-host backoff: see scheduler.py) and hands each attempt
to a `WorkerPool` thread with its own keep-alive transport. A flush (or a
shutdown that began: `expedite`) cuts backoffs short and tries each URL and host
once more within its deadline. Delivery trouble is logged once per URL when it
starts and once when it ends, never with the URL in full.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Protocol

from celery_heartbeat._exceptions import TransportError
from celery_heartbeat._redact import redact
from celery_heartbeat.delivery.backoff import BackoffPolicy, Backoffs
from celery_heartbeat.delivery.book import PendingBook
from celery_heartbeat.delivery.ping import OutgoingPing
from celery_heartbeat.delivery.scheduler import Answer, Job, Limits, Scheduler
from celery_heartbeat.delivery.transport import RequestsTransport, Transport
from celery_heartbeat.delivery.workers import WorkerPool

logger = logging.getLogger("celery_heartbeat")

THREAD_NAME = "celery-heartbeat-sender"


class Sender(Protocol):
    """Where hooks hand pings. No method ever blocks the caller for long or raises."""

    def submit(self, ping: OutgoingPing) -> bool: ...

    def flush(self, timeout: float) -> bool: ...

    def expedite(self, timeout: float) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def close(self, timeout: float = 0.0) -> None: ...


@dataclass(frozen=True)
class SenderConfig:
    #: Seconds for one HTTP attempt (connect and each read).
    timeout: float = 5.0
    #: The first retry of a failing URL or host comes after about twice this; each failure doubles it.
    backoff_initial: float = 0.5
    #: The longest a failing URL or host is left alone between attempts.
    backoff_max: float = 30.0
    #: Pings (other than failures) older than this are dropped instead of sent.
    max_age: float = 600.0
    #: What the atexit flush of a plain script waits at most.
    shutdown_timeout: float = 5.0
    #: An idle thread exits after this many seconds (the next ping starts a new one).
    idle_exit: float = 60.0
    #: How many started runs per process are remembered as owed a finish.
    owed_capacity: int = 1000
    #: Attempts in flight at once (younger than `slow_after`), to one host or several; also per host.
    concurrency: int = 8
    #: Worker threads at most, counting those stuck on slow attempts.
    max_threads: int = 24
    #: An attempt older than this no longer holds a place among the `concurrency`.
    slow_after: float = 1.0


def _reset_after_fork(ref: weakref.ref[BackgroundSender]) -> Callable[[], None]:
    def reset() -> None:
        sender = ref()
        if sender is not None:
            sender._init_state()

    return reset


class BackgroundSender:
    """The per-process sender. Thread-safe; fork-safe; greenlet-safe under monkey-patching."""

    def __init__(
        self,
        config: SenderConfig,
        transport_factory: Callable[[], Transport] = RequestsTransport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._transport_factory = transport_factory
        self._clock = clock
        self._closed = False
        self._atexit_registered = False
        self._init_state()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_after_fork(weakref.ref(self)))

    def _init_state(self) -> None:
        """Fresh state for this process: new locks, nothing pending, no threads yet (closed stays)."""
        config = self._config
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the dispatcher waits here
        self._changed = threading.Condition(self._lock)  # flush waits here
        book = PendingBook(max_age=config.max_age, owed_capacity=config.owed_capacity, clock=self._clock)
        backoffs = Backoffs(BackoffPolicy(config.backoff_initial, config.backoff_max, retry_after_max=config.max_age))
        limits = Limits(config.concurrency, config.max_threads, config.slow_after)
        self._scheduler = Scheduler(book, backoffs, limits)
        self._book = book
        self._pool = WorkerPool(
            self._lock,
            attempt=self._attempt,
            settle=self._settle,
            on_error=self._log_bug,
            transport_factory=self._transport_factory,
            name=THREAD_NAME,
            idle_exit=config.idle_exit,
            clock=self._clock,
        )
        if self._closed:
            self._pool.closed = True
        self._dispatcher: threading.Thread | None = None
        # Deliveries whose state-change log line is not yet written: flush() waits for them too,
        # so a caller that flushed sees the log that delivery caused.
        self._logging = 0
        # Urgency (a flush, or a shutdown that began): backoffs are cut short, attempts end by
        # the latest deadline, and each URL and host is tried once more even if backing off.
        self._flush_ends: list[float] = []
        self._expedite_until = 0.0
        self._urgent_since = 0.0
        self._dropped_closed = 0
        self._submitted = 0
        self._settled = 0
        self._bug_logged = False

    @property
    def _thread(self) -> threading.Thread | None:
        """The dispatcher thread, if running."""
        return self._dispatcher

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # forked without register_at_fork having run
            self._init_state()

    # -- producer side (task threads) -------------------------------------------------

    def submit(self, ping: OutgoingPing) -> bool:
        """Queue a ping for delivery; False when it was not accepted (closed). Never raises."""
        try:
            self._check_pid()
            with self._lock:
                if self._closed:
                    self._dropped_closed += 1
                    return False
                new_slot = self._book.put(ping)
                self._submitted += 1
                if self._dispatcher is None:
                    self._start_dispatcher()
                elif new_slot:  # a replaced slot is one the dispatcher already knows about
                    self._wake.notify()
            return True
        except RuntimeError:  # no new thread at interpreter shutdown: it stays pending, unsent
            return False
        except Exception:
            self._log_bug()
            return False

    def _start_dispatcher(self) -> None:
        thread = threading.Thread(target=self._dispatch_loop, name=THREAD_NAME, daemon=True)
        self._dispatcher = thread
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: nothing can be sent any more
            self._dispatcher = None
            raise
        if not self._atexit_registered:
            self._atexit_registered = True
            atexit.register(_at_exit, weakref.ref(self))

    # -- the dispatcher ------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        with self._lock:
            try:
                idle_since = self._clock()
                while not (self._closed and not self._book.pending):
                    now = self._clock()
                    try:
                        wait = self._dispatch(now)
                    except Exception:  # never let the thread die: later pings still matter
                        self._log_bug()
                        wait = 1.0
                    if self._book.pending:
                        idle_since = now
                    else:
                        idle = now - idle_since
                        if idle >= self._config.idle_exit:
                            return
                        limit = self._config.idle_exit - idle
                        wait = limit if wait is None else min(wait, limit)
                    self._wake.wait(wait)
            finally:
                self._dispatcher = None
                self._changed.notify_all()

    def _dispatch(self, now: float) -> float | None:
        """Hand out every attempt that may start now; the seconds until the next may (None: on an event)."""
        urgent_since = self._urgent_since if self._deadline(now) is not None else None
        dropped = self._book.dropped
        soonest: float | None = None
        while True:
            job, wait = self._scheduler.take(now, urgent_since)
            if wait is not None:
                soonest = wait if soonest is None else min(soonest, wait)
            if job is None:
                break
            if not self._pool.hand(job):
                self._scheduler.cancel(job)
                break
        if self._book.dropped != dropped:  # pings too old to send were dropped: flush may be done
            self._changed.notify_all()
        return soonest

    def _deadline(self, now: float) -> float | None:
        """When urgent: the monotonic time by which delivery must end; None otherwise."""
        end = max([*self._flush_ends, self._expedite_until])
        return end if end > now else None

    def _become_urgent(self) -> None:
        now = self._clock()
        if self._deadline(now) is None:
            self._urgent_since = now

    # -- one attempt (on a worker thread) ----------------------------------------------

    def _attempt(self, transport: Transport, job: Job) -> Answer:
        """One HTTP attempt, outside the lock; never raises."""
        request = job.entry.ping.request()
        began = self._clock()
        if request is None:
            return Answer(None, None, began, sendable=False)
        timeout = self._config.timeout
        end = self._deadline(began)
        if end is not None:
            timeout = max(0.05, min(timeout, end - began))
        try:
            return Answer(transport.send(request, timeout), None, began)
        except TransportError as exc:
            return Answer(None, exc.description, began)
        except Exception as exc:  # a transport bug: the ping is kept, the task never sees it
            return Answer(None, type(exc).__name__, began)

    def _settle(self, job: Job, answer: Answer | None) -> Callable[[], None] | None:
        """Record an attempt (under the lock); returns the state-change log line to write outside it."""
        if answer is None:
            answer = Answer(None, "error", job.started)
        message = self._scheduler.record(job, answer, self._clock(), closed=self._closed)
        self._wake.notify()
        if message is None:
            self._changed.notify_all()
            return None
        self._logging += 1
        url = job.entry.ping.url
        response = answer.response
        status = answer.error if answer.error is not None else f"HTTP {response.status if response else '?'}"

        def log() -> None:
            try:
                logger.warning(message, redact(url), status)  # outside the lock: submit() never waits on logging
            finally:
                with self._lock:
                    self._logging -= 1
                    self._changed.notify_all()

        return log

    # -- lifecycle ----------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is pending, at most `timeout` seconds; True when all was delivered.

        Gives up early once every URL still pending failed again during this flush,
        so a dead endpoint costs one round of attempts, not the whole timeout.
        """
        try:
            if self._pid != os.getpid():
                self._init_state()
                return True
            end = self._clock() + max(0.0, timeout)
            with self._lock:
                try:
                    return self._flush_locked(end)
                finally:
                    self._settled = self._submitted
        except Exception:
            self._log_bug()
            return False

    def _flush_locked(self, end: float) -> bool:
        if not self._book.pending and not self._logging:
            return True
        if self._dispatcher is None and not self._closed:
            try:
                self._start_dispatcher()
            except RuntimeError:  # interpreter shutdown: no thread can deliver them now
                return False
        self._become_urgent()
        self._flush_ends.append(end)
        self._wake.notify()
        try:
            while self._book.pending or self._logging:
                now = self._clock()
                if now >= end:
                    return False
                if not self._logging and self._scheduler.all_blocked(now, self._urgent_since):
                    return False
                self._changed.wait(end - now)
            return True
        finally:
            self._flush_ends.remove(end)

    def expedite(self, timeout: float) -> None:
        """Deliver everything now, within `timeout`, without waiting: a shutdown has begun.

        Safe inside a signal handler (Celery sends worker_shutting_down from one):
        it never waits for a lock the interrupted code might hold.
        """
        try:
            if self._pid != os.getpid():
                return
            self._become_urgent()
            self._expedite_until = max(self._expedite_until, self._clock() + max(0.0, timeout))
            if self._lock.acquire(blocking=False):
                try:
                    self._wake.notify()
                finally:
                    self._lock.release()
        except Exception:
            self._log_bug()

    def close(self, timeout: float = 0.0) -> None:
        """Flush for at most `timeout`, then stop the threads; what is still pending is counted dropped."""
        try:
            self.flush(timeout)
            with self._lock:
                self._closed = True
                self._book.clear()
                self._pool.close()
                self._wake.notify_all()
                self._changed.notify_all()
        except Exception:
            self._log_bug()

    def stats(self) -> dict[str, int]:
        """This process's counters, plus `pending` (queued and in flight)."""
        self._check_pid()
        with self._lock:
            out = self._scheduler.stats()
            out["dropped"] += self._dropped_closed
        return out

    def threads(self) -> int:
        """Worker threads alive now (the dispatcher not counted)."""
        with self._lock:
            return self._pool.alive

    def _at_exit(self) -> None:
        """Plain scripts: deliver what is left, unless a shutdown flush already had its turn."""
        if self._pid != os.getpid() or self._submitted == self._settled:
            return
        self.flush(self._config.shutdown_timeout)

    def _log_bug(self) -> None:
        if not self._bug_logged:
            self._bug_logged = True
            logger.error("celery-heartbeat: internal error in the sender (tasks are unaffected)", exc_info=True)


def _at_exit(ref: weakref.ref[BackgroundSender]) -> None:
    sender = ref()
    if sender is not None:
        sender._at_exit()
