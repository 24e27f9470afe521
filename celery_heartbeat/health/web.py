"""What the HTTP adapters share: probe options, query parsing and the answer to send.

The adapters in ``celery_heartbeat.contrib`` stay thin: each turns an
:class:`Answer` into its framework's response. Paths, bodies and status codes
are the same everywhere::

    GET /health/celery[?coverage=1]                   -> check_workers(...)
    GET /health/celery/queue/{queue_name}?threshold=N -> check_queue(...)

200 when healthy, 503 when not, 400 for bad input (``{"error":"..."}``); JSON is
compact and every answer carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat.config import checks
from celery_heartbeat.config.checks import MAX_QUEUE_NAME_LENGTH
from celery_heartbeat.health.checks import HealthReport, check_options, check_queue, check_workers

WORKERS_PATH = "/health/celery"
QUEUE_PATH = "/health/celery/queue/{queue_name}"
CONTENT_TYPE = "application/json"
HEADERS = {"Cache-Control": "no-store"}

#: The most digits a ``threshold`` query value may have.
MAX_THRESHOLD_DIGITS = 18


@dataclass(frozen=True)
class ProbeOptions:
    """How an adapter's endpoints probe; validated when the adapter is built."""

    timeout: float = 3.0
    min_workers: int = 1
    queue: str | None = None
    threshold: int = 1000
    details: bool = False
    cache_seconds: float = 1.0
    coverage: bool = False

    def __post_init__(self) -> None:
        timeout, min_workers, threshold, cache_seconds = check_options(
            timeout=self.timeout,
            min_workers=self.min_workers,
            queue=self.queue,
            threshold=self.threshold,
            cache_seconds=self.cache_seconds,
        )
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "min_workers", min_workers)
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "cache_seconds", cache_seconds)
        object.__setattr__(self, "coverage", checks.boolean("coverage", self.coverage))


@dataclass(frozen=True)
class Answer:
    """An HTTP status code and a compact JSON body."""

    status_code: int
    body: str

    @classmethod
    def of(cls, report: HealthReport) -> Answer:
        return cls(report.http_status, report.to_json())

    @classmethod
    def bad_request(cls, message: str) -> Answer:
        return cls(400, json.dumps({"error": message}, separators=(",", ":")))


def workers_answer(app: Any, options: ProbeOptions, coverage: str | None = None) -> Answer:
    """The answer to ``GET /health/celery[?coverage=1]`` (raw query value; default: ``options.coverage``)."""
    check_coverage = options.coverage
    if coverage is not None:
        try:
            check_coverage = checks.boolean("coverage", coverage)
        except ConfigurationError:
            return Answer.bad_request("coverage must be a boolean: 1/0, true/false, yes/no or on/off")
    return Answer.of(
        check_workers(
            app,
            timeout=options.timeout,
            min_workers=options.min_workers,
            queue=options.queue,
            details=options.details,
            cache_seconds=options.cache_seconds,
            coverage=check_coverage,
        )
    )


def queue_answer(app: Any, options: ProbeOptions, queue_name: str, threshold: str | None) -> Answer:
    """The answer to ``GET /health/celery/queue/{queue_name}?threshold=`` (raw query value)."""
    if not queue_name:
        return Answer.bad_request("queue name must not be empty")
    if len(queue_name) > MAX_QUEUE_NAME_LENGTH:
        return Answer.bad_request(f"queue name must be at most {MAX_QUEUE_NAME_LENGTH} characters")
    limit = options.threshold
    if threshold is not None:
        if not (threshold.isascii() and threshold.isdigit() and len(threshold) <= MAX_THRESHOLD_DIGITS):
            return Answer.bad_request(
                f"threshold must be a non-negative integer of at most {MAX_THRESHOLD_DIGITS} digits"
            )
        limit = int(threshold)
    return Answer.of(
        check_queue(app, queue_name, threshold=limit, timeout=options.timeout, cache_seconds=options.cache_seconds)
    )


def missing_extra(module: str, framework: str, extra: str) -> ImportError:
    """The ImportError an adapter raises when its framework is not installed."""
    return ImportError(f"celery_heartbeat.contrib.{module} needs {framework}: pip install 'celery-heartbeat[{extra}]'")
