"""Each provider's wire protocol: what start, success and failure look like on the wire."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from celery_heartbeat.config.providers import WireRequest, build_request, detect_provider

RID = "6f3c2f44-91a2-4c35-8f0e-1a2b3c4d5e6f"


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        ("https://hc-ping.com/uuid", "healthchecks"),
        ("https://cronitor.link/p/key/job", "cronitor"),
        ("https://uptime.betterstack.com/api/v1/heartbeat/tok", "betterstack"),
        ("https://nosnch.in/abc123", "deadmanssnitch"),
        ("https://status.example.com/api/push/tok?status=up&msg=OK&ping=", "uptime_kuma"),
        ("https://vigilmon.example/heartbeat/abc", "generic"),
        ("https://hc.internal.example/ping/uuid", "generic"),
    ],
)
def test_provider_is_detected_from_host_or_push_path(url: str, provider: str) -> None:
    """Hosted services are recognised by host; Uptime Kuma by its /api/push/ path; the rest are generic."""
    assert provider == detect_provider(url)


def _split(request: WireRequest | None) -> tuple[str, str, dict[str, list[str]], bytes | None]:
    assert request is not None
    parts = urlsplit(request.url)
    return request.method, parts.path, parse_qs(parts.query), request.body


def test_healthchecks_start_success_fail_with_run_id() -> None:
    """Healthchecks: URL, URL/start, URL/fail, each carrying rid=<task id>; a failure names the exception."""
    url = "https://hc-ping.com/abc"
    assert ("GET", "/abc/start", {"rid": [RID]}, None) == _split(
        build_request("healthchecks", url, "start", run_id=RID)
    )
    assert ("GET", "/abc", {"rid": [RID]}, None) == _split(build_request("healthchecks", url, "success", run_id=RID))
    assert ("POST", "/abc/fail", {"rid": [RID]}, b"ValueError") == _split(
        build_request("healthchecks", url, "failure", run_id=RID, detail="ValueError")
    )


def test_healthchecks_non_uuid_task_id_gets_a_stable_uuid_rid() -> None:
    """Healthchecks only accepts UUID run ids, so a custom task id maps to the same UUID for start and finish."""
    start = _split(build_request("healthchecks", "https://hc-ping.com/abc", "start", run_id="nightly-1"))
    finish = _split(build_request("healthchecks", "https://hc-ping.com/abc", "success", run_id="nightly-1"))
    assert start[2]["rid"] == finish[2]["rid"]
    assert 36 == len(start[2]["rid"][0])


def test_cronitor_states_and_series() -> None:
    """Cronitor: ?state=run|complete|fail with series=<task id>."""
    url = "https://cronitor.link/p/key/job"
    for kind, state in (("start", "run"), ("success", "complete"), ("failure", "fail")):
        method, path, query, _ = _split(build_request("cronitor", url, kind, run_id=RID))  # type: ignore[arg-type]
        assert ("GET", "/p/key/job") == (method, path)
        assert [state] == query["state"]
        assert [RID] == query["series"]


def test_betterstack_success_and_fail_no_start() -> None:
    """Better Stack: URL and URL/fail; it has no start signal."""
    url = "https://uptime.betterstack.com/api/v1/heartbeat/tok"
    assert ("GET", "/api/v1/heartbeat/tok", {}, None) == _split(build_request("betterstack", url, "success"))
    assert ("GET", "/api/v1/heartbeat/tok/fail", {}, None) == _split(build_request("betterstack", url, "failure"))
    assert None is build_request("betterstack", url, "start")


def test_uptime_kuma_up_and_down_replace_the_push_urls_own_query() -> None:
    """Uptime Kuma: status=up&msg=OK, or status=down with the exception type; the URL's own defaults are replaced."""
    url = "https://kuma.local/api/push/tok?status=up&msg=OK&ping="
    assert ("GET", "/api/push/tok", {"status": ["up"], "msg": ["OK"]}, None) == _split(
        build_request("uptime_kuma", url, "success")
    )
    assert ("GET", "/api/push/tok", {"status": ["down"], "msg": ["TimeLimitExceeded"]}, None) == _split(
        build_request("uptime_kuma", url, "failure", detail="TimeLimitExceeded")
    )
    assert None is build_request("uptime_kuma", url, "start")


def test_deadmanssnitch_success_and_failure_exit_status() -> None:
    """Dead Man's Snitch: URL, or URL?s=1&m=<exception type>; no start."""
    url = "https://nosnch.in/abc123"
    assert ("GET", "/abc123", {}, None) == _split(build_request("deadmanssnitch", url, "success"))
    assert ("GET", "/abc123", {"s": ["1"], "m": ["KeyError"]}, None) == _split(
        build_request("deadmanssnitch", url, "failure", detail="KeyError")
    )
    assert None is build_request("deadmanssnitch", url, "start")


def test_generic_only_pings_success_with_a_plain_get() -> None:
    """A generic monitor (Vigilmon and any other URL) gets a plain GET on success and nothing else."""
    url = "https://vigilmon.example/heartbeat/abc?token=x"
    assert WireRequest("GET", url) == build_request("generic", url, "success", run_id=RID)
    assert None is build_request("generic", url, "failure", detail="ValueError")
    assert None is build_request("generic", url, "start", run_id=RID)


def test_user_query_parameters_are_kept() -> None:
    """A URL's own query parameters (e.g. Healthchecks' create=1) survive next to ours."""
    request = build_request("healthchecks", "https://hc-ping.com/key/slug?create=1", "success", run_id=RID)
    assert {"create": ["1"], "rid": [RID]} == _split(request)[2]
