"""One rule for every value, wherever it is given: settings, install() keywords, beat liveness, health checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

import celery_heartbeat
from celery_heartbeat import ConfigurationError, heartbeat_signature, install_beat_liveness
from celery_heartbeat.beat.liveness import ENTRY_NAME
from celery_heartbeat.health.web import ProbeOptions

URL = "https://hc-ping.com/0f9e8d7c-beat"


def test_a_numeric_string_period_is_accepted_by_the_setting_and_the_function(make_app: Callable[..., Celery]) -> None:
    """every="60" means 60 s in heartbeat_beat_every and in install_beat_liveness() alike."""
    from_setting = make_app(heartbeat_beat_url=URL, heartbeat_beat_every="60")
    celery_heartbeat.install(from_setting)
    from_call = make_app()
    install_beat_liveness(from_call, URL, every="60")  # type: ignore[arg-type]
    expected = dt.timedelta(seconds=60)
    assert expected == from_setting.conf.beat_schedule[ENTRY_NAME]["schedule"]
    assert expected == from_call.conf.beat_schedule[ENTRY_NAME]["schedule"]


@pytest.mark.parametrize(("value", "expected"), [(3, 3), ("3", 3), (3.0, 3), ("3.0", 3)])
def test_an_integral_number_is_an_integer(value: Any, expected: int, make_app: Callable[..., Celery]) -> None:
    """max_attempts accepts 3, "3", 3.0 and "3.0" alike."""
    assert expected == celery_heartbeat.install(make_app(), max_attempts=value).settings.max_attempts


@pytest.mark.parametrize("value", [2.5, "2.5", True, "three", 0])
def test_a_non_integral_or_non_number_is_not_an_integer(value: Any, make_app: Callable[..., Celery]) -> None:
    """max_attempts rejects fractions, booleans, words and values below its minimum."""
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(make_app(), max_attempts=value)
    assert "heartbeat_max_attempts" == info.value.key


SPACED = "https://hc-ping.com/0f9e 8d7c"


@pytest.mark.parametrize(
    "attempt",
    [
        lambda app: celery_heartbeat.install(app, urls={"t": SPACED}),
        lambda app: celery_heartbeat.install(app, urls={"t": {"url": SPACED}}),
        lambda app: celery_heartbeat.install(app, beat_url=SPACED),
        lambda app: install_beat_liveness(app, SPACED),
        lambda app: heartbeat_signature(SPACED, app=app),
    ],
    ids=["heartbeat_urls", "monitor dict", "heartbeat_beat_url", "install_beat_liveness", "heartbeat_signature"],
)
def test_a_url_with_a_space_is_rejected_everywhere(
    attempt: Callable[[Celery], Any], make_app: Callable[..., Celery]
) -> None:
    """A space inside a URL is a ConfigurationError wherever a URL is given."""
    with pytest.raises(ConfigurationError, match="spaces"):
        attempt(make_app())


def test_surrounding_whitespace_from_an_env_file_is_stripped(make_app: Callable[..., Celery]) -> None:
    """A URL with a trailing newline (read from a file) is the URL."""
    hb = celery_heartbeat.install(make_app(), urls={"t": f"  {URL}\n"})
    assert URL == hb.monitor_for("t").url  # type: ignore[union-attr]


def test_health_probe_options_follow_the_same_rule() -> None:
    """Health options take the same numbers as settings ("2" seconds) and raise ConfigurationError otherwise."""
    assert (2.0, 3, 10) == (
        ProbeOptions(timeout="2").timeout,
        ProbeOptions(min_workers=3.0).min_workers,  # type: ignore[arg-type]
        ProbeOptions(threshold="10").threshold,
    )  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError) as info:
        ProbeOptions(min_workers=1.5)  # type: ignore[arg-type]
    assert "min_workers" == info.value.key


def test_beat_url_setting_accepts_a_heartbeat_urls_name(make_app: Callable[..., Celery]) -> None:
    """heartbeat_beat_url may name a heartbeat_urls entry, as install_beat_liveness() accepts."""
    app = make_app(heartbeat_urls={"beat-alive": URL}, heartbeat_beat_url="beat-alive")
    hb = celery_heartbeat.install(app)
    assert URL == hb.settings.beat_url.url  # type: ignore[union-attr]
    assert ENTRY_NAME in app.conf.beat_schedule


def test_beat_url_setting_accepts_a_monitor_dict(make_app: Callable[..., Celery]) -> None:
    """heartbeat_beat_url may be a monitor dict (a self-hosted provider, say)."""
    app = make_app(heartbeat_beat_url={"url": "https://hc.example.com/ping/abc", "provider": "healthchecks"})
    hb = celery_heartbeat.install(app)
    assert "healthchecks" == hb.settings.beat_url.provider  # type: ignore[union-attr]
    assert ENTRY_NAME in app.conf.beat_schedule


def test_beat_url_setting_with_an_unknown_name_is_an_error(make_app: Callable[..., Celery]) -> None:
    """A name that is no heartbeat_urls entry is a ConfigurationError naming heartbeat_beat_url."""
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(make_app(heartbeat_beat_url="no-such-monitor"))
    assert "heartbeat_beat_url" == info.value.key
