"""Redaction: a ping URL's path or query is its credential, an API key is one.

Redaction belongs to the types, not the call sites: `Secret` wraps a key and
never shows it, `redact_value` shows any value (nested lists, tuples, dicts,
schemeless URLs) with every possible credential cut, and the library's value
types build their `__repr__` from these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, urlsplit

_KEEP = 4
_ELLIPSIS = "…"
# A short word or number is shown whole in an error ("maybe", "nagios", "3.5"); anything else may be a token.
_HARMLESS = re.compile(r"^(?:[A-Za-z_ -]{0,16}|[-+]?[0-9]{0,6}(?:\.[0-9]{0,6})?)$")


def _cut(text: str) -> str:
    return text if len(text) <= _KEEP else text[:_KEEP] + _ELLIPSIS


def redact(url: str) -> str:
    """Keep scheme and host; cut every path segment and query value to 4 characters.

    >>> redact("https://hc-ping.com/6e1fbf8f-cd5c-4a9c/start?rid=abcdef")
    'https://hc-ping.com/6e1f…/star…?rid=abcd…'
    >>> redact("nosnch.in/c2354d53d2")
    'nosnch.in/c235…'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return _cut(url)
    if not parts.scheme or not host:
        return _schemeless(url)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username or parts.password:
        netloc = "***@" + netloc
    path = "/".join(_cut(segment) for segment in parts.path.split("/"))
    out = f"{parts.scheme}://{netloc}{path}"
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        out += "?" + "&".join(f"{quote(k, safe='')}={_cut(v)}" for k, v in pairs)
    return out


def _schemeless(text: str) -> str:
    """`host/path` without a scheme: the first segment is kept when it looks like a host name."""
    head, sep, rest = text.partition("/")
    if not sep:
        return _cut(text)
    if "@" in head or not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", head) or "." not in head:
        head = _cut(head)
    query = ""
    if "?" in rest:
        rest, _, query = rest.partition("?")
    out = head + "/" + "/".join(_cut(segment) for segment in rest.split("/"))
    if query:
        out += "?" + "&".join(_cut(part) for part in query.split("&"))
    return out


def redact_text(text: str) -> str:
    """A string that may hold a URL or a key, as it may be shown: URLs redacted, tokens cut."""
    if _HARMLESS.match(text):
        return text
    if "://" in text or "/" in text:
        return redact(text.strip())
    return _cut(text)


def redact_value(value: object) -> str:
    """A repr of any value with every string that may be a credential redacted, recursively."""
    if isinstance(value, Secret):
        return repr(value)
    if isinstance(value, str):
        return repr(redact_text(value))
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)}: {redact_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [redact_value(v) for v in value]
        if isinstance(value, tuple):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if isinstance(value, (set, frozenset)):
            return "{" + ", ".join(items) + "}" if items else "set()"
        return "[" + ", ".join(items) + "]"
    if isinstance(value, (bool, int, float, type(None))):
        return repr(value)
    if hasattr(value, "__dataclass_fields__"):  # the library's own value types redact themselves
        return repr(value)
    return f"<{type(value).__name__}>"


def _key(key: object) -> str:
    # Mapping keys are task names, globs or monitor-dict keys: shown, but a URL used as a key is still cut.
    if isinstance(key, str) and ("://" in key or "/" in key):
        return repr(redact(key))
    return repr(key) if isinstance(key, (str, int, float, bool, type(None))) else f"<{type(key).__name__}>"


class Secret:
    """An API or ping key: compared and hashed by value, shown as its first 4 characters only.

    `reveal()` is the one way to the value, used where the key goes on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return repr(_cut(self._value))

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)
