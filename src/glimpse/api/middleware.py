"""ASGI middleware: request ids, version-prefixed URLs, bodies where none belong, and one access-log
line per request."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glimpse.api.errors import error_body
from glimpse.context import new_request_id
from glimpse.errors import GlimpseError
from glimpse.logs import bind_log_fields, reset_log_fields
from glimpse.telemetry import metrics

access_log = logging.getLogger("glimpse.access")
log = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-openstack-request-id"
#: ``/v2.N/...`` is served as ``/v2/...`` for every minor version this service lists.
_VERSIONED_PATH = re.compile(r"^/v2\.(\d{1,2})(/.*)?$")
MAX_MINOR_VERSION = 12
HEALTHCHECK_PATH = "/healthcheck"
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
_NUL_IN_URL = (
    "The request URL contains a NUL character (%00); no image id, member, tag, store or filter value "
    "can hold one."
)


#: Methods whose requests carry no body in the Image API.
_BODILESS_METHODS = frozenset({"GET", "HEAD", "DELETE"})


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


def _error(status: int, message: str, request_id: str) -> tuple[Message, Message]:
    media_type, body = error_body(status, message)
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (REQUEST_ID_HEADER, request_id.encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _count(scope: Scope, status: int, elapsed: float) -> None:
    """One request in the metrics, under its route's template (``/v2/images/{image_id}``): never the
    path itself, whose ids would make a series per image."""
    route = scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    method = scope["method"]
    counters = metrics()
    counters.requests.labels(method, template, str(status)).inc()
    counters.request_seconds.labels(method, template).observe(elapsed)


class RequestContextMiddleware:
    """Assigns the request id (the client's, when valid) and logs the request when it ends."""

    def __init__(self, app: ASGIApp, max_request_id_length: int = 64) -> None:
        self.app = app
        self.max_request_id_length = max_request_id_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == REQUEST_ID_HEADER), None)
        request_id = new_request_id()
        status_holder = {"status": 500}
        fields = None
        path = scope["path"]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = 1
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        async def reject(problem: str) -> None:
            start, body = _error(400, problem, request_id)
            status_holder["status"] = 400
            await send(start)
            await send(body)

        try:
            if given is not None:
                problem = self._check_given(given)
                if problem:
                    await reject(problem)
                    return
                request_id = given if given.startswith("req-") else f"req-{given}"
            if scope["method"] in _BODILESS_METHODS and _has_body(scope["headers"]):
                await reject(
                    f"A {scope['method']} request takes no body; send it without one "
                    "(no Content-Length, or Content-Length: 0)."
                )
                return
            query = scope.get("query_string", b"")
            if "\x00" in path or b"%00" in query or b"\x00" in query:
                await reject(_NUL_IN_URL)
                return
            state: dict[str, Any] = scope.setdefault("state", {})
            state["request_id"] = request_id
            fields = bind_log_fields(request_id=request_id)
            match = _VERSIONED_PATH.match(path)
            if match and int(match.group(1)) <= MAX_MINOR_VERSION:
                new_path = "/v2" + (match.group(2) or "/")
                scope = {**scope, "path": new_path, "raw_path": new_path.encode()}
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                cause = _glimpse_cause(exc)
                if not status_holder.get("started") or cause is None:
                    raise
                # The status and headers are gone already (a download whose store failed midway):
                # the only answer left is to cut the connection, which the server does when the
                # application returns without finishing the response.
                log.warning(
                    "%s %s %s: the answer was cut off after it had started: %s",
                    request_id,
                    scope["method"],
                    path,
                    cause.message,
                )
        finally:
            elapsed = time.perf_counter() - started
            elapsed_ms = elapsed * 1000
            _count(scope, status_holder["status"], elapsed)
            # A load balancer asks for /healthcheck every few seconds: log only the failed answers.
            quiet = path == HEALTHCHECK_PATH and status_holder["status"] < 500
            access_log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s %s %s %.1fms",
                request_id,
                scope["method"],
                path,
                status_holder["status"],
                elapsed_ms,
            )
            if fields is not None:
                reset_log_fields(fields)

    def _check_given(self, given: str) -> str | None:
        limit = self.max_request_id_length
        if limit and len(given) > limit:
            return (
                f"x-openstack-request-id is too long ({len(given)} characters); the maximum is {limit}. "
                "Send a shorter id or none, and one will be generated."
            )
        if not _PRINTABLE.match(given):
            return "x-openstack-request-id must be printable ASCII without spaces."
        return None


def _glimpse_cause(exc: BaseException) -> GlimpseError | None:
    """The :class:`GlimpseError` behind ``exc`` (itself, or what caused it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GlimpseError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
