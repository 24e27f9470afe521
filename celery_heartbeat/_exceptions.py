"""Every exception celery-heartbeat raises, under one base.

HeartbeatError
├── ConfigurationError    (also a ValueError: a bad setting or argument, named key, redacted value)
├── UnsupportedSchedule   (also a ValueError: a beat schedule no monitor can express; sync skips it)
├── ProviderError         (a monitoring provider's management API call failed; safe to print)
├── BrokerDown            (a health probe could not reach the broker within its deadline)
├── ProbeStateError       (a container probe's state file is unreadable or of an unknown shape)
└── TransportError        (internal: no HTTP answer came; never reaches a task)

Delivery problems never raise: a monitoring endpoint's trouble is logged and
counted, never passed on to the task that happened to trigger the ping.
"""

from __future__ import annotations

from celery_heartbeat._redact import redact_value


class HeartbeatError(Exception):
    """Base of every error this library raises."""


class ConfigurationError(HeartbeatError, ValueError):
    """A setting or argument is invalid; the message names the key and the (redacted) value.

    `value` keeps what was passed (for code that inspects it); `str()` and `repr()`
    only ever show it redacted.
    """

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"{key}={redact_value(value)}: {expected}")

    def __repr__(self) -> str:
        return f"ConfigurationError({self.args[0]!r})"

    def renamed(self, key: str) -> ConfigurationError:
        """The same error under the key as the user wrote it (Django: `CELERY_HEARTBEAT_TIMEOUT`)."""
        return ConfigurationError(key, self.value, self.expected)


class UnsupportedSchedule(HeartbeatError, ValueError):
    """A schedule no cron expression or period can express faithfully; the message says why."""


class TransportError(HeartbeatError):
    """No HTTP answer came (refused, timed out, TLS, DNS...); the words are safe to log (no URL)."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        super().__init__(description)


class ProviderError(HeartbeatError):
    """A management API call failed; the message is safe to print (no credentials)."""


class BrokerDown(HeartbeatError):
    """The broker could not be reached, or failed, within the probe's deadline."""


class ProbeStateError(HeartbeatError):
    """A probe state file cannot be read or does not have the expected shape; the message names the file."""
