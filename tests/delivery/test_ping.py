"""OutgoingPing: the request it becomes, with its event time where the provider accepts one."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.delivery.ping import OutgoingPing


def test_a_cronitor_ping_carries_its_event_time_as_stamp() -> None:
    """Cronitor files a ping at `stamp` (epoch seconds), so one delivered late lands at its event's time."""
    ping = OutgoingPing(Monitor("https://cronitor.link/p/key/job", "cronitor"), "success", "run-1", at=1700000000.25)
    request = ping.request()
    assert request is not None
    query = parse_qs(urlsplit(request.url).query)
    assert (["complete"], ["run-1"], ["1700000000.250"]) == (query["state"], query["series"], query["stamp"])


def test_other_providers_get_no_stamp() -> None:
    """Healthchecks files pings on arrival and takes no event time: nothing extra is sent."""
    request = OutgoingPing(Monitor("https://hc-ping.com/abc", "healthchecks"), "success", at=1700000000.0).request()
    assert request is not None and "stamp" not in request.url


def test_the_event_time_is_taken_when_the_ping_is_made() -> None:
    """`at` defaults to the wall-clock time of the signal, `created` to the monotonic one."""
    before = time.time()
    ping = OutgoingPing(Monitor("https://hc-ping.com/abc", "healthchecks"), "success")
    assert before <= ping.at <= time.time()


def test_a_ping_made_from_an_earlier_event_keeps_that_events_time() -> None:
    """Given only the event's monotonic time (an event handed over by a pool process), `at` is derived from it."""
    ping = OutgoingPing(
        Monitor("https://cronitor.link/p/key/job", "cronitor"), "success", created=time.monotonic() - 30.0
    )
    assert abs(time.time() - 30.0 - ping.at) < 1.0
