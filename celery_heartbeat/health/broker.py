"""Broker access for the health probes: bounded connections, early-exit broadcasts, depth.

Everything here runs against a deadline (a ``time.monotonic()`` value), set
after :func:`load_transport` has done the one-time imports:

- :func:`probe_connection` opens a *fresh* connection (never the app's pool, so
  a probe cannot wait for a pooled connection) with every socket timeout set
  to the time left, and connects once per broker URL, with no retry loop.
- :func:`broadcast_until` speaks the pidbox protocol that ``app.control`` uses,
  but on that fresh connection, with a reply queue of its own, without
  publish retries, and stops as soon as enough workers have answered.
  ``app.control.broadcast(limit=n)`` counts ``drain_events`` calls rather than
  replies and republishes with ``retry=True`` (unbounded on a dying broker);
  neither suits a probe.
- :func:`queue_depth` asks the broker through a passive ``queue_declare``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kombu.exceptions import KombuError

from celery_heartbeat._exceptions import BrokerDown

logger = logging.getLogger("celery_heartbeat.health")

#: Pauses between polls of the reply queue: from 2 ms, doubling up to 20 ms.
_FIRST_PAUSE = 0.002
_LONGEST_PAUSE = 0.02

#: What stays in a finished probe's Redis reply list until it expires (default: Celery's 10 s).
_TOMBSTONE = b"celery-heartbeat: probe finished"
_TOMBSTONE_SECONDS = 10.0

#: Replies collected so far: worker host name -> that worker's reply.
Replies = dict[str, Any]


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline``, never less than a small positive floor."""
    return max(deadline - time.monotonic(), 0.01)


def _error_types(conn: Any) -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, KombuError, socket.timeout)
    return errors + tuple(conn.connection_errors) + tuple(conn.channel_errors)


def load_transport(app: Any, *, for_write: bool) -> None:
    """Import the broker's transport and its client library now, before a probe's deadline starts.

    A one-time cost (kombu's Redis transport imports ``redis``: up to a second
    on a loaded machine) that, counted against a probe's timeout, made a fresh
    process (the CLI, a web app's first probe) report live workers as missing.
    Creating a transport object connects nothing.
    """
    conn = (app.connection_for_write if for_write else app.connection_for_read)()
    try:
        conn.transport  # noqa: B018 - resolves, imports and instantiates the transport class
    finally:
        conn.release()


@contextlib.contextmanager
def probe_connection(app: Any, deadline: float, *, for_write: bool) -> Iterator[Any]:
    """Yield a connected, fresh broker connection; raise :class:`BrokerDown` on broker errors.

    Broker errors raised inside the ``with`` block are turned into
    :class:`BrokerDown` too, except those the caller catches first.
    """
    budget = remaining(deadline)
    factory = app.connection_for_write if for_write else app.connection_for_read
    conn = factory(connect_timeout=budget, heartbeat=0)
    options: dict[str, Any] = conn.transport_options  # a copy made for this connection
    driver = getattr(conn.transport, "driver_type", "")
    if driver == "redis":
        options.update(
            socket_connect_timeout=budget,
            socket_timeout=budget,
            retry_on_timeout=False,
        )
    elif driver == "amqp":
        options.update(read_timeout=budget, write_timeout=budget)
    errors = _error_types(conn)
    try:
        try:
            conn.ensure_connection(
                max_retries=max(len(conn.alt), 1) - 1,  # each failover URL once
                interval_start=0,
                interval_step=0,
                interval_max=0,
                timeout=budget,
            )
            yield conn
        except errors as exc:
            logger.warning(
                "celery-heartbeat health probe: broker %s failed: %r",
                conn.as_uri(),
                exc,
            )
            raise BrokerDown(describe(exc)) from exc
    finally:
        try:
            conn.release()
        except Exception:  # closing a broken connection must not change the answer
            logger.debug("celery-heartbeat health probe: error closing", exc_info=True)


def describe(exc: BaseException) -> str:
    """Name the root cause of a broker error without its message (which may name hosts)."""
    chain: list[BaseException] = [exc]
    while len(chain) < 10:  # explicit causes first, then the implicit context
        inner = chain[-1].__cause__ or chain[-1].__context__
        if inner is None or inner in chain:
            break
        chain.append(inner)
    # The first socket-level error is the telling one (ConnectionRefusedError, TimeoutError);
    # else the library error under kombu's OperationalError wrapper (AccessRefused, ...).
    socket_level = [error for error in chain if isinstance(error, OSError)]
    named = socket_level[0] if socket_level else chain[min(1, len(chain) - 1)]
    # Python 3.9's socket.timeout is not yet TimeoutError; name it the same everywhere.
    name = "TimeoutError" if isinstance(named, socket.timeout) else type(named).__name__
    return f"broker unreachable: {name}"


def broadcast_until(
    app: Any,
    conn: Any,
    command: str,
    *,
    deadline: float,
    enough: Callable[[Replies], bool],
) -> Replies:
    """Broadcast a control ``command`` and collect replies until ``enough`` or the deadline.

    The message is the one ``app.control.broadcast`` sends (same exchange,
    serializer and fields), so every Celery worker version answers it. Replies
    are fetched with ``basic_get`` rather than a consumer: kombu's Redis
    consumer blocks in BRPOP for whole seconds (and waits that BRPOP out when
    the channel closes), which would overrun a probe's deadline by up to 1 s.
    """
    conf = app.conf
    mailbox = app.control.Mailbox(
        conf.control_exchange,
        type="fanout",
        accept=conf.accept_content,
        serializer=conf.task_serializer,
        queue_ttl=conf.control_queue_ttl,
        reply_queue_ttl=conf.control_queue_ttl,
        queue_expires=conf.control_queue_expires,
        reply_queue_expires=conf.control_queue_expires,
    )
    ticket = str(uuid.uuid4())
    replies: Replies = {}
    channel = conn.default_channel
    # A reply queue no other mailbox can share: kombu names it after id(mailbox),
    # which a short-lived mailbox hands on to the next one, along with any
    # consumer still waiting on that queue name elsewhere in this process.
    reply_key = str(uuid.uuid4())
    reply_queue = copy.copy(mailbox.reply_queue)
    reply_queue.name = f"{reply_key}.{mailbox.reply_exchange.name}"
    reply_queue.routing_key = reply_key
    reply_queue = reply_queue(channel)
    try:
        reply_queue.declare()
        producer = conn.Producer(channel, auto_declare=False)
        producer.publish(
            {
                "method": command,
                "arguments": {},
                "destination": None,
                "pattern": None,
                "matcher": None,
                "ticket": ticket,
                "reply_to": {"exchange": mailbox.reply_exchange.name, "routing_key": reply_key},
            },
            exchange=mailbox.exchange.name,
            declare=[mailbox.exchange],
            headers={"clock": mailbox.clock.forward(), "expires": time.time() + remaining(deadline)},
            serializer=mailbox.serializer,
            retry=False,
        )
        pause = _FIRST_PAUSE
        while not enough(replies):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            message = reply_queue.get(no_ack=True, accept=conf.accept_content)
            if message is None:
                time.sleep(min(pause, left))
                pause = min(pause * 2, _LONGEST_PAUSE)
                continue
            pause = _FIRST_PAUSE
            if message.headers.get("ticket") != ticket:
                continue  # a late answer to an earlier probe
            try:
                body = message.decode()
            except KombuError:  # a serializer this app does not accept: not an answer
                logger.debug("celery-heartbeat health probe: undecodable reply", exc_info=True)
                continue
            if isinstance(body, Mapping):
                replies.update(body)
    finally:
        with contextlib.suppress(*_error_types(conn)):
            channel.after_reply_message_received(reply_queue.name)
            _expire_late_replies(conn, channel, reply_queue.name, conf.control_queue_expires)
    return replies


def _expire_late_replies(conn: Any, channel: Any, queue: str, expires: float | None) -> None:
    """Leave the deleted reply list on Redis as an expiring tombstone, so late replies cannot outlive it.

    A worker that looked the reply queue up before it was unbound pushes its
    reply afterwards, and kombu's Redis transport pushes without an expiry
    (kombu 5.3 ignores ``x-expires`` on Redis; 5.7 applies it only on channels
    that declared the queue), leaving a key forever. A list that exists with a
    TTL keeps it through later pushes, so the key always goes away.
    """
    if getattr(conn.transport, "driver_type", "") != "redis":
        return  # RabbitMQ drops a message to an unbound queue, and expires the queue itself
    ttl_ms = int(max(expires or _TOMBSTONE_SECONDS, 1.0) * 1000)
    with channel.conn_or_acquire() as client, client.pipeline() as pipe:  # MULTI/EXEC: never without a TTL
        pipe.rpush(queue, _TOMBSTONE)
        pipe.pexpire(queue, ttl_ms)
        pipe.execute()


def queue_depth(conn: Any, queue: str) -> int | None:
    """Ready messages in ``queue``, or None when the broker has no such queue.

    kombu's Redis transport sums the priority sub-queues and applies
    ``global_keyprefix``; Redis deletes empty lists, so an absent Redis queue
    is an empty one. RabbitMQ answers a passive declare of a missing queue
    with 404 NOT_FOUND. A passive declare has no side effects on either.
    """
    channel = conn.channel()
    try:
        _, depth, _ = channel.queue_declare(queue=queue, passive=True)
        return int(depth)
    except tuple(conn.channel_errors) as exc:
        if str(getattr(exc, "reply_code", "")) != "404":
            raise
        if getattr(conn.transport, "driver_type", "") == "redis":
            # kombu's passive declare asks EXISTS, which its global_keyprefix
            # support does not prefix: a prefixed queue always looks absent.
            # The LLEN-based size (all priority sub-queues, prefixed) is exact,
            # and 0 for a queue Redis has deleted because it was empty.
            return int(channel._size(queue))
        return None
    finally:
        with contextlib.suppress(Exception):
            channel.close()
