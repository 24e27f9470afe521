"""Small helpers shared by test modules: a port nobody listens on, and polling for a condition."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable


def free_port() -> int:
    """A local port nothing listens on (connections are refused) until a test binds it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition not met in time") -> None:
    """Poll `condition` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def write_django_settings(directory: Path, module: str, db: Path) -> Path:
    """Write `directory/module.py`: a Django settings module for django-celery-beat on a sqlite file `db`.

    The sqlite timeout is long: two beats (or a beat and a worker) share the file in some tests.
    """
    settings = f"""\
SECRET_KEY = "x"
USE_TZ = True
INSTALLED_APPS = ["django_celery_beat"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {str(db)!r}, "OPTIONS": {{"timeout": 30}}}}}}
"""
    path = directory / f"{module}.py"
    path.write_text(settings)
    return path
