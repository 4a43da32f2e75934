"""Loopback stand-ins for the OpenStack services around an image endpoint, for the SDK's tests.

None of these is the real thing, and each says what it stands in for:

* :class:`FakeKeystone`: a test double of Keystone's v3 token API, just enough for keystoneauth's
  password flow (version discovery at ``/``, ``POST /v3/auth/tokens`` with ``X-Subject-Token`` and a
  catalog). We cannot run a real Keystone in these tests.
* :class:`TokenCheckingProxy`: what keystonemiddleware does in front of Glance: it refuses requests
  whose ``X-Auth-Token`` is not valid (401) and passes the others on to a live ``glimpse-server``
  with the identity headers of the token's project, user and roles.
* :class:`GlanceReplay`: answers with responses captured from a real Glance 33.0.0
  (``../shared/glance-samples``: status line, headers and body, byte for byte).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "glance-samples"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Seen:
    """One request a loopback server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Seen], Answer]


class Loopback:
    """A threaded HTTP server on 127.0.0.1 that answers every request with ``handle``."""

    def __init__(self, handle: Handler) -> None:
        self.seen: list[Seen] = []
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                outer.seen.append(seen)
                answer = handle(seen)
                self.send_response(answer.status)
                for name, value in answer.headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            # http.server dispatches on these names.
            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_answer(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> Answer:
    return Answer(status, [("Content-Type", "application/json"), *(headers or [])], json.dumps(body).encode())


@dataclass
class Identity:
    project_id: str
    user_id: str
    roles: tuple[str, ...]


class FakeKeystone(Loopback):
    """A test double of Keystone v3 (see the module docstring): one user, one project, tokens
    valid until :meth:`revoke`. ``catalog`` maps (interface, region) to the image endpoint URL."""

    def __init__(self, user: str, password: str, identity: Identity) -> None:
        self.user, self.password, self.identity = user, password, identity
        self.catalog: dict[tuple[str, str], str] = {}
        self.tokens: dict[str, Identity] = {}
        self.issued: list[str] = []
        self._numbers = itertools.count(1)
        super().__init__(self._answer)

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def _version(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.url}/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    def _answer(self, seen: Seen) -> Answer:
        path = urlsplit(seen.path).path.rstrip("/")
        if seen.method == "GET" and path == "":
            return json_answer(300, {"versions": {"values": [self._version()]}})
        if seen.method == "GET" and path == "/v3":
            return json_answer(200, {"version": self._version()})
        if seen.method == "POST" and path == "/v3/auth/tokens":
            return self._issue(json.loads(seen.body))
        return json_answer(404, {"error": {"code": 404, "title": "Not Found", "message": seen.path}})

    def _issue(self, request: dict[str, Any]) -> Answer:
        user = request["auth"]["identity"]["password"]["user"]
        if user.get("name") != self.user or user.get("password") != self.password:
            message = "The request you have made requires authentication."
            return json_answer(401, {"error": {"code": 401, "title": "Unauthorized", "message": message}})
        token = f"tok-{next(self._numbers)}"
        self.tokens[token] = self.identity
        self.issued.append(token)
        now = datetime.now(UTC)
        body = {
            "token": {
                "methods": ["password"],
                "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                "expires_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                "user": {"id": self.identity.user_id, "name": self.user, "domain": {"id": "default"}},
                "project": {"id": self.identity.project_id, "name": "demo", "domain": {"id": "default"}},
                "roles": [{"id": f"r-{role}", "name": role} for role in self.identity.roles],
                "catalog": [
                    {
                        "id": "image-service",
                        "type": "image",
                        "name": "glance",
                        "endpoints": [
                            {
                                "id": f"ep-{i}",
                                "interface": iface,
                                "region": region,
                                "region_id": region,
                                "url": url,
                            }
                            for i, ((iface, region), url) in enumerate(self.catalog.items())
                        ],
                    }
                ],
            }
        }
        return json_answer(201, body, [("X-Subject-Token", token)])


class TokenCheckingProxy(Loopback):
    """keystonemiddleware's part (see the module docstring) in front of ``upstream``.

    ``identities`` maps the valid tokens to whom they stand for (a live view such as
    ``FakeKeystone.tokens``). Requests under ``prefix`` are passed on without it, the way a cloud
    serves Glance under ``/image``.
    """

    def __init__(self, upstream: str, identities: Mapping[str, Identity], prefix: str = "") -> None:
        self.identities = identities
        self.prefix = prefix
        self.refused = 0
        self._upstream = httpx.Client(base_url=upstream, timeout=90.0)
        super().__init__(self._answer)

    def close(self) -> None:
        super().close()
        self._upstream.close()

    def tokens(self) -> list[str | None]:
        return [seen.headers.get("x-auth-token") for seen in self.seen]

    def _answer(self, seen: Seen) -> Answer:
        identity = self.identities.get(seen.headers.get("x-auth-token", ""))
        if identity is None:
            self.refused += 1
            message = "The request you have made requires authentication."
            body = {"error": {"code": 401, "title": "Unauthorized", "message": message}}
            return json_answer(401, body, [("WWW-Authenticate", "Keystone uri='http://keystone'")])
        path = seen.path.removeprefix(self.prefix) if self.prefix else seen.path
        drop = {"host", "x-auth-token", "x-project-id", "x-user-id", "x-roles", *HOP_BY_HOP}
        headers = {k: v for k, v in seen.headers.items() if k not in drop}
        headers.update(
            {
                "X-Project-Id": identity.project_id,
                "X-User-Id": identity.user_id,
                "X-Roles": ",".join(identity.roles),
            }
        )
        response = self._upstream.request(seen.method, path, headers=headers, content=seen.body)
        return Answer(response.status_code, list(response.headers.multi_items()), response.content)


def sample(name: str) -> Answer:
    """A captured Glance response: ``NAME.headers.txt`` plus ``NAME.json`` or ``NAME.body.txt``."""
    status_line, *lines = (SAMPLES / f"{name}.headers.txt").read_text().strip().splitlines()
    headers = [(k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines if ":" in line)]
    body = b""
    for suffix in (".json", ".body.txt"):
        if (SAMPLES / f"{name}{suffix}").exists():
            body = (SAMPLES / f"{name}{suffix}").read_bytes()
    return Answer(int(status_line.split()[1]), headers, body)


class GlanceReplay(Loopback):
    """Plain Glance on the wire (see the module docstring).

    ``routes`` maps ``"METHOD /path"`` (without the query) to the samples to answer with, in turn;
    the last one keeps being served. Anything else gets Glance's HTML 404.
    """

    def __init__(self, routes: Mapping[str, list[str]]) -> None:
        self._routes = {key: list(names) for key, names in routes.items()}
        self._lock = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, seen: Seen) -> Answer:
        key = f"{seen.method} {urlsplit(seen.path).path}"
        with self._lock:
            names = self._routes.get(key)
            if not names:
                return sample("error_404_tasks")
            name = names.pop(0) if len(names) > 1 else names[0]
        return sample(name)
