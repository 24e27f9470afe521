"""Settings are validated at install; a bad one names its key and (redacted) value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

import celery_heartbeat
from celery_heartbeat import ConfigurationError

TOKEN = "0f9e8d7c-6b5a-4938-2716-a5b4c3d2e1f0"


def test_defaults_match_the_contract(make_app: Callable[..., Celery]) -> None:
    """With no settings, install() uses the documented defaults."""
    s = celery_heartbeat.install(make_app()).settings
    assert (False, True, 5.0, 3, 10.0, 5.0, True, None, 60.0) == (
        s.send_start,
        s.send_failure,
        s.timeout,
        s.max_attempts,
        s.coalesce_seconds,
        s.shutdown_timeout,
        s.enabled,
        s.beat_url,
        s.beat_every,
    )
    assert ({}, None, None) == (dict(s.urls), s.probe_dir, s.probe_port)


def test_settings_are_read_from_app_conf_and_keywords_override(make_app: Callable[..., Celery]) -> None:
    """app.conf heartbeat_* values apply, and install() keywords win over them."""
    app = make_app(heartbeat_timeout=2, heartbeat_max_attempts=5)
    s = celery_heartbeat.install(app, timeout=1.5).settings
    assert (1.5, 5) == (s.timeout, s.max_attempts)


def test_django_namespace_settings_work(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """CELERY_HEARTBEAT_* in a Django-style settings module reach install() through the CELERY namespace."""
    (tmp_path / "djsettings_hb.py").write_text(
        f"CELERY_HEARTBEAT_URLS = {{'proj.tasks.report': 'https://hc-ping.com/{TOKEN}'}}\n"
        "CELERY_HEARTBEAT_SEND_START = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Celery("proj", set_as_current=False)
    app.config_from_object("djsettings_hb", namespace="CELERY")
    hb = celery_heartbeat.install(app)
    try:
        assert True is hb.settings.send_start
        assert f"https://hc-ping.com/{TOKEN}" == hb.monitor_for("proj.tasks.report").url  # type: ignore[union-attr]
    finally:
        hb.uninstall()


@pytest.mark.parametrize(
    ("conf", "key"),
    [
        ({"heartbeat_urls": ["https://hc-ping.com/x"]}, "heartbeat_urls"),
        ({"heartbeat_urls": {"t": f"ftp://hc-ping.com/{TOKEN}"}}, "heartbeat_urls['t']"),
        ({"heartbeat_urls": {"t": f"hc-ping.com/{TOKEN}"}}, "heartbeat_urls['t']"),
        ({"heartbeat_urls": {"t": 42}}, "heartbeat_urls['t']"),
        (
            {"heartbeat_urls": {"t": {"url": f"https://hc-ping.com/{TOKEN}", "provider": "pingdom"}}},
            "heartbeat_urls['t']['provider']",
        ),
        (
            {"heartbeat_urls": {"t": {"url": f"https://hc-ping.com/{TOKEN}", "grace": 5}}},
            "heartbeat_urls['t']",
        ),
        (
            {"heartbeat_urls": {"t": {"url": f"https://hc-ping.com/{TOKEN}", "start": "yes"}}},
            "heartbeat_urls['t']['start']",
        ),
        ({"heartbeat_timeout": -1}, "heartbeat_timeout"),
        ({"heartbeat_timeout": 0}, "heartbeat_timeout"),
        ({"heartbeat_timeout": "fast"}, "heartbeat_timeout"),
        ({"heartbeat_timeout": float("nan")}, "heartbeat_timeout"),
        ({"heartbeat_max_attempts": 0}, "heartbeat_max_attempts"),
        ({"heartbeat_max_attempts": 2.5}, "heartbeat_max_attempts"),
        ({"heartbeat_coalesce_seconds": -5}, "heartbeat_coalesce_seconds"),
        ({"heartbeat_shutdown_timeout": "soon"}, "heartbeat_shutdown_timeout"),
        ({"heartbeat_send_start": "maybe"}, "heartbeat_send_start"),
        ({"heartbeat_beat_url": f"gopher://x/{TOKEN}"}, "heartbeat_beat_url"),
        ({"heartbeat_beat_every": 0}, "heartbeat_beat_every"),
        ({"heartbeat_probe_dir": 5}, "heartbeat_probe_dir"),
        ({"heartbeat_probe_port": 0}, "heartbeat_probe_port"),
        ({"heartbeat_probe_port": 70000}, "heartbeat_probe_port"),
        ({"heartbeat_probe_port": "http"}, "heartbeat_probe_port"),
    ],
)
def test_bad_configuration_names_key_and_hides_the_token(
    conf: dict[str, Any], key: str, make_app: Callable[..., Celery]
) -> None:
    """Each bad value raises ConfigurationError whose message starts with the key and never shows the token."""
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(make_app(**conf))
    message = str(info.value)
    assert key == info.value.key
    assert message.startswith(f"{key}=")
    assert TOKEN not in message
    assert isinstance(info.value, ValueError)


def test_unknown_install_keyword_is_rejected(make_app: Callable[..., Celery]) -> None:
    """A misspelt keyword to install() is an error, not silently ignored."""
    with pytest.raises(ConfigurationError, match="timout"):
        celery_heartbeat.install(make_app(), timout=3)


def test_error_message_says_what_is_allowed(make_app: Callable[..., Celery]) -> None:
    """The message tells the user what a valid value looks like."""
    with pytest.raises(ConfigurationError) as info:
        celery_heartbeat.install(make_app(heartbeat_urls={"t": {"url": "https://hc-ping.com/x", "provider": "nagios"}}))
    assert "healthchecks" in str(info.value)
    assert "'nagios'" in str(info.value)


@pytest.mark.parametrize("empty", [None, ""])
def test_unset_environment_variable_disables_an_entry_quietly(empty: Any, make_app: Callable[..., Celery]) -> None:
    """None or "" (an unset environment variable) disables that entry without an error."""
    hb = celery_heartbeat.install(make_app(heartbeat_urls={"proj.report": empty, "proj.other": {"url": empty}}))
    assert None is hb.monitor_for("proj.report")
    assert None is hb.monitor_for("proj.other")


def test_string_numbers_and_booleans_from_environment_are_accepted(make_app: Callable[..., Celery]) -> None:
    """Values read from environment variables as strings ("2.5", "true") are parsed, not rejected."""
    s = celery_heartbeat.install(make_app(heartbeat_timeout="2.5", heartbeat_send_start="true")).settings
    assert (2.5, True) == (s.timeout, s.send_start)


def test_probe_settings_take_paths_ports_and_unset_environment_variables(
    make_app: Callable[..., Celery], tmp_path: Any
) -> None:
    """heartbeat_probe_dir takes a str or Path, heartbeat_probe_port an int or a numeric string; "" means unset."""
    s = celery_heartbeat.install(make_app(heartbeat_probe_dir=tmp_path, heartbeat_probe_port="8001")).settings
    assert (str(tmp_path), 8001) == (s.probe_dir, s.probe_port)
    s = celery_heartbeat.install(make_app(heartbeat_probe_dir="", heartbeat_probe_port="")).settings
    assert (None, None) == (s.probe_dir, s.probe_port)
