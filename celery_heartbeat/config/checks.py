"""The one set of value checkers: every setting and every argument is checked here.

The rule, everywhere (settings, `install()` keywords, `install_beat_liveness`,
health checks and their web adapters, the CLI):

- seconds and other numbers: an int or a float, or a string holding one (values
  read from environment variables arrive as strings); finite; never a bool.
- integers: the same, and the number must be integral (``3``, ``3.0``, ``"3"``).
- booleans: True/False, or one of the strings 1/0, true/false, yes/no, on/off.
- URLs: ``http://`` or ``https://`` with a host, no whitespace or control
  characters inside (surrounding whitespace from a .env file is stripped).

A failed check raises `ConfigurationError` naming the key, the redacted value
and what is allowed.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat._redact import Secret

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

#: The longest queue name accepted (AMQP's limit for a queue name).
MAX_QUEUE_NAME_LENGTH = 255


def boolean(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(key, value, "expected a boolean (True/False, or 1/0, true/false, yes/no, on/off)")


def _as_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def number(key: str, value: object, *, minimum: float = 0.0, inclusive: bool = True, what: str = "seconds") -> float:
    """A finite number >= minimum (or > minimum when not `inclusive`)."""
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    got = _as_float(value)
    if got is None or got < minimum or (got == minimum and not inclusive):
        raise ConfigurationError(key, value, f"expected a finite number of {what} {bound}")
    return got


def seconds(key: str, value: object, *, positive: bool = True) -> float:
    """Seconds: > 0 when `positive`, else >= 0."""
    return number(key, value, minimum=0.0, inclusive=not positive)


def integer(key: str, value: object, *, minimum: int) -> int:
    """An integral number >= minimum (3, 3.0 and "3" are all 3)."""
    got = _as_float(value)
    if got is None or not got.is_integer() or got < minimum:
        raise ConfigurationError(key, value, f"expected an integer >= {minimum}")
    return int(got)


def optional_integer(key: str, value: object, *, minimum: int) -> int | None:
    return None if value is None or value == "" else integer(key, value, minimum=minimum)


def url(key: str, value: object) -> str:
    """An http(s) URL with a host; whitespace around it is stripped, inside it is an error."""
    if not isinstance(value, str):
        raise ConfigurationError(key, value, "expected an http(s) URL string")
    text = value.strip()
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigurationError(key, value, "a URL must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(key, value, f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(key, value, "expected an http:// or https:// URL with a host")
    return text


def name(key: str, value: object, *, what: str = "name", max_length: int = MAX_QUEUE_NAME_LENGTH) -> str:
    """A non-empty string of at most `max_length` characters (queue names, monitor names)."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(key, value, f"expected a non-empty {what}")
    if len(value) > max_length:
        raise ConfigurationError(key, value, f"expected a {what} of at most {max_length} characters")
    return value


def secret(key: str, value: object) -> Secret | None:
    """An API or ping key (no spaces or '/'), kept wrapped so it never shows; None or "" means unset."""
    if value is None or value == "":
        return None
    if isinstance(value, Secret):
        value = value.reveal()
    if not isinstance(value, str) or not value.strip() or any(c.isspace() or c == "/" for c in value.strip()):
        shown = Secret(str(value))
        raise ConfigurationError(key, shown, "expected a key string without spaces or '/' (or None)")
    return Secret(value.strip())
