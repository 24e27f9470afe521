"""URLs are secrets: what logs, errors and CLI output may show of them."""

from __future__ import annotations

import pytest

from celery_heartbeat import redact


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hc-ping.com/6e1fbf8f-cd5c-4a9c", "https://hc-ping.com/6e1f…"),
        ("https://hc-ping.com/abcd", "https://hc-ping.com/abcd"),
        ("https://cronitor.link/p/0123456789abcdef/nightly", "https://cronitor.link/p/0123…/nigh…"),
        (
            "https://kuma.local:3001/api/push/Xy12Ab34?status=up&msg=OK",
            "https://kuma.local:3001/api/push/Xy12…?status=up&msg=OK",
        ),
        ("https://nosnch.in/c2354d53d2?m=secretmessage", "https://nosnch.in/c235…?m=secr…"),
        ("http://user:password@example.com/x", "http://***@example.com/x"),
    ],
)
def test_redact_keeps_scheme_and_host_and_cuts_long_segments(url: str, expected: str) -> None:
    """Scheme and host stay whole; path segments and query values over 4 characters keep 4 and an ellipsis."""
    assert expected == redact(url)


def test_redact_never_contains_the_token() -> None:
    """The credential part of a ping URL never survives redaction."""
    token = "0f9e8d7c-6b5a-4938-2716-a5b4c3d2e1f0"
    assert token not in redact(f"https://hc-ping.com/{token}/start?rid={token}")


def test_redact_of_garbage_is_cut_not_echoed() -> None:
    """Something that is not a URL is still cut rather than shown whole."""
    assert "nota…" == redact("notaurl-with-secret")
