"""Make Celery's silent failures loud: heartbeat pings from Celery's own signals.

import celery_heartbeat
celery_heartbeat.install(app)

The names below are imported on first use (PEP 562), so `import celery_heartbeat`
alone loads nothing: the container probe (`python -m celery_heartbeat.probe`)
must start without Celery, kombu or the user's app.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from celery_heartbeat._canvas import heartbeat_signature, with_heartbeat
    from celery_heartbeat._exceptions import ConfigurationError, HeartbeatError
    from celery_heartbeat._heartbeat import Heartbeat, install, install_beat_liveness
    from celery_heartbeat._redact import redact
    from celery_heartbeat.config.monitor import Monitor

__all__ = [
    "ConfigurationError",
    "Heartbeat",
    "HeartbeatError",
    "Monitor",
    "heartbeat_signature",
    "install",
    "install_beat_liveness",
    "redact",
    "with_heartbeat",
]

_SOURCES = {
    "ConfigurationError": "celery_heartbeat._exceptions",
    "Heartbeat": "celery_heartbeat._heartbeat",
    "HeartbeatError": "celery_heartbeat._exceptions",
    "Monitor": "celery_heartbeat.config.monitor",
    "heartbeat_signature": "celery_heartbeat._canvas",
    "install": "celery_heartbeat._heartbeat",
    "install_beat_liveness": "celery_heartbeat._heartbeat",
    "redact": "celery_heartbeat._redact",
    "with_heartbeat": "celery_heartbeat._canvas",
}


def __getattr__(name: str) -> typing.Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
