"""Local stand-ins for the Healthchecks (v3) and Cronitor management APIs, over real HTTP.

They speak the documented endpoints, check credentials, validate fields the way
the services do (Healthchecks: 60 s..1 year, slug pattern, IANA zones, cron
syntax) and record every request, so tests can assert that a second sync only
reads. They hold state in memory and serve on 127.0.0.1 from a daemon thread.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
import zoneinfo
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from croniter import croniter

YEAR = 31_536_000
SLUG = re.compile(r"^[a-z0-9_-]*$")
ZONES = zoneinfo.available_timezones() | {"UTC"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        parts = urlsplit(self.path)
        request = Request(self.command, parts.path, parse_qs(parts.query), body, dict(self.headers.items()))
        api = self.server.api
        with api.lock:
            api.requests.append(request)
            delay = api.delay
            vanish = api.vanish_on == self.command
        if vanish:  # the provider goes away: no answer now, and every later connection is refused
            self.server.shutdown()
            self.server.server_close()
            self.close_connection = True
            return
        if delay and api.stopping.wait(delay):
            self.close_connection = True
            return
        with api.lock:
            status, payload = api.handle(request)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: FakeApi


class FakeApi:
    """Common plumbing: a real server, a request log, an optional delay (a provider that hangs)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.delay = 0.0
        #: An HTTP method whose first request makes the server go away (connections refused from then on).
        self.vanish_on: str | None = None
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeApi:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.api = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def writes(self) -> list[Request]:
        """Every request that could change something (anything but GET)."""
        with self.lock:
            return [r for r in self.requests if r.method != "GET"]

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def handle(self, request: Request) -> tuple[int, Any]:
        raise NotImplementedError


class FakeHealthchecks(FakeApi):
    """Healthchecks Management API v3: GET/POST /api/v3/checks/, POST/DELETE /api/v3/checks/<uuid>."""

    def __init__(self, api_key: str = "hc-api-key-0123456789", ping_endpoint: str = "http://ping.invalid/") -> None:
        super().__init__()
        self.api_key = api_key
        self.ping_endpoint = ping_endpoint
        self.checks: dict[str, dict[str, Any]] = {}  # uuid -> stored check

    def add(self, **fields: Any) -> str:
        """Put a check in place directly (made by hand, or by another app): the model's defaults apply."""
        code = str(uuid.uuid4())
        check = {
            "name": "",
            "slug": "",
            "tags": "",
            "desc": "",
            "grace": 3600,
            "kind": "simple",
            "timeout": 86400,
            "schedule": "* * * * *",
            "tz": "UTC",
            "channels": "",
        }
        check.update(fields)
        if "schedule" in fields:
            check["kind"] = "cron"
        self.checks[code] = check
        return code

    def by_slug(self, slug: str) -> dict[str, Any]:
        """The stored check with this slug, as the API would answer for it."""
        with self.lock:
            (code,) = [code for code, c in self.checks.items() if c["slug"] == slug]
            return self._dict(code)

    def _dict(self, code: str) -> dict[str, Any]:
        check = self.checks[code]
        out = {k: v for k, v in check.items() if k not in ("kind", "timeout", "schedule", "tz")}
        out.update(
            {
                "uuid": code,
                "n_pings": 0,
                "status": "new",
                "started": False,
                "last_ping": None,
                "next_ping": None,
                "manual_resume": False,
                "methods": "",
                "ping_url": self.ping_endpoint + code,
                "update_url": f"{self.url}/api/v3/checks/{code}",
                "pause_url": f"{self.url}/api/v3/checks/{code}/pause",
                "resume_url": f"{self.url}/api/v3/checks/{code}/resume",
            }
        )
        if check["kind"] == "cron":
            out["schedule"], out["tz"] = check["schedule"], check["tz"]
        else:
            out["timeout"] = check["timeout"]
        return out

    def _validate(self, spec: Any) -> str | None:
        if not isinstance(spec, dict):
            return "json validation error: request body is not an object"
        for key in ("timeout", "grace"):
            if key in spec:
                value = spec[key]
                if not isinstance(value, int) or isinstance(value, bool):
                    return f"json validation error: {key} is not a number"
                if value < 60:
                    return f"json validation error: {key} is too small"
                if value > YEAR:
                    return f"json validation error: {key} is too large"
        if "slug" in spec and (not isinstance(spec["slug"], str) or not SLUG.match(spec["slug"])):
            return "json validation error: slug does not match pattern"
        if "name" in spec and len(spec["name"]) > 100:
            return "json validation error: name is too long"
        if "tz" in spec and spec["tz"] not in ZONES:
            return "json validation error: tz is not a valid timezone"
        if "schedule" in spec:
            schedule = spec["schedule"]
            if len(schedule) > 100 or len(schedule.split()) != 5 or not croniter.is_valid(schedule):
                return "json validation error: schedule is not a valid cron or OnCalendar expression"
        if "unique" in spec and not set(spec["unique"]) <= {"name", "slug", "tags", "timeout", "grace"}:
            return "json validation error: an item in 'unique' has unexpected value"
        return None

    def _update(self, check: dict[str, Any], spec: dict[str, Any]) -> None:
        """As the service does: a schedule makes a cron check, else a timeout makes a simple one."""
        if spec.get("schedule"):
            check["kind"], check["schedule"] = "cron", spec["schedule"]
        elif "timeout" in spec:
            check["kind"], check["timeout"] = "simple", spec["timeout"]
        for key in ("name", "slug", "tags", "desc", "grace", "tz", "channels"):
            if key in spec:
                check[key] = spec[key]

    def handle(self, request: Request) -> tuple[int, Any]:
        if request.headers.get("X-Api-Key") != self.api_key:
            return 401, {"error": "missing api key"}
        if request.path == "/api/v3/checks/":
            if request.method == "GET":
                return 200, {"checks": [self._dict(code) for code in self.checks]}
            if request.method == "POST":
                error = self._validate(request.body)
                if error:
                    return 400, {"error": error}
                spec = request.body
                for code, check in self.checks.items():
                    unique = spec.get("unique") or []
                    if unique and all(check.get(field) == spec.get(field) for field in unique):
                        self._update(check, spec)
                        return 200, self._dict(code)
                code = self.add()
                self._update(self.checks[code], spec)
                return 201, self._dict(code)
        match = re.fullmatch(r"/api/v3/checks/([0-9a-f-]{36})", request.path)
        if match:
            code = match.group(1)
            if code not in self.checks:
                return 404, {"error": "not found"}
            if request.method == "POST":
                error = self._validate(request.body)
                if error:
                    return 400, {"error": error}
                self._update(self.checks[code], request.body)
                return 200, self._dict(code)
            if request.method == "DELETE":
                out = self._dict(code)
                del self.checks[code]
                return 200, out
            if request.method == "GET":
                return 200, self._dict(code)
        return 404, {"error": "not found"}


class FakeCronitor(FakeApi):
    """Cronitor: GET /api/monitors?page=N (paged), PUT /api/monitors (upsert), DELETE /api/monitors/<key>."""

    def __init__(self, api_key: str = "cronitor-api-key-0123456789", page_size: int = 2) -> None:
        super().__init__()
        self.api_key = api_key
        self.page_size = page_size
        self.monitors: dict[str, dict[str, Any]] = {}

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        return header == expected

    def handle(self, request: Request) -> tuple[int, Any]:
        if not self._authorized(request):
            return 401, {"detail": "Invalid API key"}
        if request.path == "/api/monitors":
            if request.method == "GET":
                page = int(request.query.get("page", ["1"])[0])
                items = list(self.monitors.values())
                chunk = items[(page - 1) * self.page_size : page * self.page_size]
                return 200, {
                    "monitors": chunk,
                    "page": page,
                    "page_size": self.page_size,
                    "total_monitor_count": len(items),
                }
            if request.method == "PUT":
                body = request.body
                if not isinstance(body, dict) or not isinstance(body.get("monitors"), list):
                    return 400, {"errors": "expected {'monitors': [...]}"}
                out = []
                for monitor in body["monitors"]:
                    if not monitor.get("key") or monitor.get("type") not in ("job", "heartbeat", "check"):
                        return 400, {"errors": f"invalid monitor {monitor!r}"}
                    if "timezone" in monitor and monitor["timezone"] not in ZONES:
                        return 400, {"errors": "invalid timezone"}
                    stored = self.monitors.setdefault(monitor["key"], {"notify": ["default"], "tags": []})
                    stored.update(monitor)
                    out.append(dict(stored))
                return 200, {"monitors": out}
        match = re.fullmatch(r"/api/monitors/([^/]+)", request.path)
        if match and request.method == "DELETE":
            if self.monitors.pop(match.group(1), None) is None:
                return 404, {"detail": "not found"}
            return 204, None
        return 404, {"detail": "not found"}
