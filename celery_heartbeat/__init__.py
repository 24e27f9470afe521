"""Make Celery's silent failures loud: heartbeat pings from Celery's own signals.

import celery_heartbeat
celery_heartbeat.install(app)
"""

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
