"""Helpers shared by the adapter tests: a live Redis worker, queued messages, a closed port."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from celery import Celery
from celery.contrib.testing.worker import start_worker
from conftest import REDIS_HOST, REDIS_PORT, require_broker


@dataclass(frozen=True)
class Live:
    """A Celery app with one live worker (``worker``) and an unconsumed queue holding 3 messages."""

    app: Celery
    name: str
    worker: str
    queue: str
    url: str


def redis_url() -> str:
    """The test Redis URL (skipped, or failed under CI, when Redis is down)."""
    require_broker("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{os.environ.get('PYTEST_REDIS_DB', '1')}"


def isolated_app(url: str, name: str) -> Celery:
    """A Celery app whose broadcasts and default queue are its own (``name``)."""
    app = Celery(name, broker=url, set_as_current=False)
    app.conf.control_exchange = name
    app.conf.task_default_queue = name
    app.conf.broker_connection_retry_on_startup = True  # (Celery 5.3 warns without it)
    return app


@contextlib.contextmanager
def live_worker() -> Iterator[Live]:
    """Run one in-process worker on Redis, with 3 messages waiting in a queue it does not consume."""
    url = redis_url()
    name = f"t{uuid.uuid4().hex[:10]}"
    app = isolated_app(url, name)
    queue = f"{name}.backlog"
    for priority in (0, 5, 9):
        app.send_task("hb.noop", queue=queue, priority=priority)
    try:  # (Celery 5.3's start_worker picks the host name itself)
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[name]) as worker:
            yield Live(app=app, name=name, worker=worker.hostname, queue=queue, url=url)
    finally:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"*{name}*"))
        if keys:
            client.delete(*keys)
        client.close()


def down_app() -> Celery:
    """A Celery app whose broker port is closed (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return isolated_app(f"redis://127.0.0.1:{port}/0", f"t{uuid.uuid4().hex[:10]}")


DOWN_BODY = '{"status":"down","error":"broker unreachable: ConnectionRefusedError"}'


def lost_entry_app(live: Live) -> tuple[Celery, str]:
    """The live worker's app again, with a beat entry sent to a queue nobody consumes; and that body."""
    app = isolated_app(live.url, live.name)
    queue = f"{live.name}.nobody"
    app.conf.beat_schedule = {"lost": {"task": "hb.noop", "schedule": 60.0, "options": {"queue": queue}}}
    body = f'{{"status":"uncovered","workers":1,"uncovered":[{{"queue":"{queue}","entries":["lost"],"tasks":[]}}]}}'
    return app, body
