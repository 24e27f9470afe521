"""Exceptions raised by celery-heartbeat.

HeartbeatError
├── ConfigurationError   (also a ValueError: bad settings, named key and value)
└── TransportError       (internal: no HTTP answer came; never reaches a task)

Delivery problems never raise: a monitoring endpoint's trouble is logged and
counted, never passed on to the task that happened to trigger the ping.
"""

from __future__ import annotations


class HeartbeatError(Exception):
    """Base of every error this library raises."""


class ConfigurationError(HeartbeatError, ValueError):
    """A setting or argument is invalid; the message names the key and the (redacted) value."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"{key}={_show(value)}: {expected}")


class TransportError(HeartbeatError):
    """No HTTP answer came (refused, timed out, TLS, DNS...); the words are safe to log (no URL)."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        super().__init__(description)


def _show(value: object) -> str:
    from celery_heartbeat._redact import redact_value

    return redact_value(value)
