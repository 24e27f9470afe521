"""Redaction of URLs, which are secrets: a ping URL's path or query is its credential."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit

_KEEP = 4
_ELLIPSIS = "…"


def _cut(text: str) -> str:
    return text if len(text) <= _KEEP else text[:_KEEP] + _ELLIPSIS


def redact(url: str) -> str:
    """Keep scheme and host; cut every path segment and query value to 4 characters.

    >>> redact("https://hc-ping.com/6e1fbf8f-cd5c-4a9c/start?rid=abcdef")
    'https://hc-ping.com/6e1f…/star…?rid=abcd…'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return _cut(url)
    if not parts.scheme or not host:
        return _cut(url)
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


def redact_value(value: object) -> str:
    """A repr for error messages: strings that look like URLs are redacted."""
    if isinstance(value, str):
        return repr(redact(value)) if "://" in value else repr(_cut(value) if len(value) > 40 else value)
    if isinstance(value, dict):
        inner = ", ".join(f"{k!r}: {redact_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return repr(value)
