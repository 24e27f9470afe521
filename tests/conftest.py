"""Shared fixtures: real brokers (reachable or skipped; failed under CI), isolated names and apps, test senders."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import celery
import pytest
from celery import Celery
from celery.result import AsyncResult
from support import free_port as _free_port

if TYPE_CHECKING:
    from celery_heartbeat.delivery.sender import BackgroundSender

pytest_plugins = ("celery.contrib.pytest", "celery_heartbeat.testing")

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_broker(name: str, host: str, port: int) -> None:
    """Skip with a reason when the broker is down, or fail when CI demands brokers."""
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CELERY_HEARTBEAT_REQUIRE_BROKERS") == "1":
        pytest.fail(f"{reason} and CELERY_HEARTBEAT_REQUIRE_BROKERS=1", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> str:
    """A Redis broker URL (database 0..15 chosen by the PYTEST_REDIS_DB env var, default 1)."""
    require_broker("Redis", REDIS_HOST, REDIS_PORT)
    db = os.environ.get("PYTEST_REDIS_DB", "1")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


@pytest.fixture
def rabbitmq_url() -> str:
    """A RabbitMQ broker URL on the default vhost."""
    require_broker("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT)
    return f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}//"


@pytest.fixture(params=["redis", "rabbitmq"])
def real_broker_url(request: pytest.FixtureRequest) -> str:
    """Each real broker in turn."""
    fixture = "redis_url" if request.param == "redis" else "rabbitmq_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(scope="session", autouse=True)
def result_waits_immune_to_garbage_collection() -> Iterator[None]:
    """Before Celery 5.7, a collected result object ends other waits on its task: not here.

    `AsyncResult.__del__` unsubscribes its task's result channel whichever copy of the result is
    collected (Celery 5.7 checks for other waiters). Canvases make copies; when the cycle collector
    frees one while a test waits on the original, the wait never ends although the result is stored
    (a TimeoutError seen in CI on Celery 5.3). With redis-py 5.3, whose pub/sub lock is not
    reentrant, a collection landing inside `apply_async`'s subscribe deadlocks the caller (celery
    issue 10477; seen here). Only Celery's result objects lose the finalizer, and the library makes
    none; workers in subprocesses run as shipped.
    """
    if celery.VERSION >= (5, 7):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AsyncResult, "__del__", lambda self: None)
        yield


@pytest.fixture
def free_port() -> int:
    """A local port nothing listens on (connections are refused) until the test binds it."""
    return _free_port()


@pytest.fixture
def unique_name() -> str:
    """A name no other test (or concurrent test run) uses: isolates queues and broadcasts.

    Use it for the Celery app's main name, its default queue and its
    ``control_exchange`` so ``inspect`` broadcasts reach only this test's workers.
    """
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clean_env() -> Iterator[dict[str, str]]:
    """A copy of the environment for subprocesses, with this checkout importable."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    yield env


@pytest.fixture
def make_app() -> Iterator[Callable[..., Celery]]:
    """Build isolated Celery apps (memory broker by default); uninstalls the library from them afterwards."""
    apps: list[Celery] = []

    def factory(main: str = "", broker: str = "memory://", backend: str | None = None, **conf: Any) -> Celery:
        app = Celery(main or f"a{uuid.uuid4().hex[:8]}", broker=broker, backend=backend, set_as_current=False)
        if broker.startswith("memory://"):
            app.conf.broker_transport_options = {"polling_interval": 0.01}
        app.conf.update(conf)
        apps.append(app)
        return app

    yield factory
    from celery_heartbeat._heartbeat import installed

    for app in apps:
        handle = installed(app)
        if handle is not None:
            handle.uninstall()


@pytest.fixture
def make_sender() -> Iterator[Callable[..., BackgroundSender]]:
    """Senders with test-sized timeouts (0.5 s per attempt, short backoffs), closed after the test.

    A transport factory, when given, replaces HTTP (a fake endpoint).
    """
    from celery_heartbeat.delivery.sender import BackgroundSender, SenderConfig

    senders: list[BackgroundSender] = []

    def make(
        transport_factory: Any = None,
        *,
        timeout: float = 0.5,
        backoff_initial: float = 0.05,
        backoff_max: float = 0.5,
        **config: Any,
    ) -> BackgroundSender:
        config.update(timeout=timeout, backoff_initial=backoff_initial, backoff_max=backoff_max)
        args = () if transport_factory is None else (transport_factory,)
        sender = BackgroundSender(SenderConfig(**config), *args)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        sender.close()
