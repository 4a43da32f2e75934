"""The single table from exception class to HTTP status, and the Glance-shaped error body.

Every handler just raises; this module is the only place that decides status codes. Unknown
exceptions become a 500 whose body carries the request id so an operator can find the traceback.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Protocol, runtime_checkable

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from glimpse import errors
from glimpse.telemetry import metrics

log = logging.getLogger(__name__)


@runtime_checkable
class CarriesFields(Protocol):
    """An error with more to say than its message: ``extra_fields`` are added to JSON error bodies
    (never replacing ``message``, ``code`` or ``title``)."""

    @property
    def extra_fields(self) -> Mapping[str, object]: ...


#: Most specific class first; the first ``isinstance`` match wins.
STATUS_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (errors.RangeNotSatisfiable, 416),
    (errors.ImageGone, 410),
    (errors.FormatMismatch, 415),
    (errors.UnsupportedMediaType, 415),
    (errors.UnsafeImage, 400),
    (errors.KeyReused, 422),
    (errors.InvalidInput, 400),
    (errors.Unauthenticated, 401),
    (errors.IdentityUnavailable, 503),
    (errors.NotFound, 404),
    (errors.Forbidden, 403),
    (errors.Conflict, 409),
    (errors.TooLarge, 413),
    (errors.MethodNotAllowed, 405),
    (errors.StoreFull, 413),
    (errors.StoreNotFound, 404),
    (errors.StorageError, 503),
    (errors.GlimpseError, 500),
)


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    return 500


#: The body types Glance's error responses (webob's) offer, in webob's order of preference.
_ERROR_OFFERS = ("text/html", "application/json")


def negotiate_error_type(accept: str | None) -> str:
    """The error body type Glance (webob) picks for an ``Accept`` header.

    JSON only when the client prefers it (openstacksdk sends ``application/json``); HTML when it
    accepts anything (``*/*``, as python-glanceclient and curl send), which glanceclient parses into
    its message; plain text when neither is acceptable or no ``Accept`` header was sent.
    """
    ranges: list[tuple[str, float]] = []
    for part in (accept or "").split(","):
        media, *params = (item.strip() for item in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((media.lower(), quality))
    best: tuple[float, int] | None = None
    chosen = "text/plain"
    for index, offer in enumerate(_ERROR_OFFERS):
        major = offer.split("/")[0]
        specificity, quality = -1, 0.0
        for media, q in ranges:
            rank = 2 if media == offer else 1 if media == f"{major}/*" else 0 if media == "*/*" else -1
            if rank > specificity:
                specificity, quality = rank, q
        if specificity >= 0 and quality > 0 and (best is None or (-quality, index) < best):
            best, chosen = (-quality, index), offer
    return chosen


def error_body(
    status: int,
    message: str,
    accept: str | None = "application/json",
    extra: Mapping[str, object] | None = None,
) -> tuple[str, bytes]:
    """The media type and bytes of a Glance-shaped error body for ``status``, negotiated on ``accept``."""
    phrase = HTTPStatus(status).phrase
    body_type = negotiate_error_type(accept)
    if body_type == "application/json":
        body: dict[str, object] = {"message": message, "code": f"{status} {phrase}", "title": phrase}
        body.update((key, value) for key, value in (extra or {}).items() if key not in body)
        return "application/json", orjson.dumps(body)
    if body_type == "text/html":
        text = (
            f"<html>\n <head>\n  <title>{status} {phrase}</title>\n </head>\n <body>\n"
            f"  <h1>{status} {phrase}</h1>\n  {html.escape(message)}<br /><br />\n\n\n\n </body>\n</html>"
        )
    else:
        text = f"{status} {phrase}\n\n{message}\n\n   "
    return f"{body_type}; charset=UTF-8", text.encode()


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    accept: str | None = "application/json",
    extra: Mapping[str, object] | None = None,
) -> Response:
    media_type, content = error_body(status, message, accept, extra)
    return Response(content, status_code=status, headers=headers, media_type=media_type)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "Invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.GlimpseError)
    async def _glimpse_error(request: Request, exc: errors.GlimpseError) -> Response:
        status = status_for(exc)
        headers = None
        if isinstance(exc, errors.RangeNotSatisfiable):
            headers = {"Content-Range": f"bytes */{exc.size}"}
        if isinstance(exc, errors.Unauthenticated) and exc.www_authenticate:
            headers = {"WWW-Authenticate": exc.www_authenticate}
        if isinstance(exc, errors.RequestInFlight):
            headers = {"Retry-After": str(exc.retry_after)}
        if status >= 500:
            log.error("request failed: %s", exc.message)
        if isinstance(exc, errors.ImageLocked):
            metrics().lock_conflicts.inc()
        extra = exc.extra_fields if isinstance(exc, CarriesFields) else None
        return error_response(status, exc.message, headers, request.headers.get("accept"), extra)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(400, _describe_validation(exc), accept=request.headers.get("accept"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and message == "Not Found":
            message = f"The resource could not be found: no route for {request.url.path}."
        elif exc.status_code == 405 and message == "Method Not Allowed":
            message = f"Method {request.method} is not allowed for {request.url.path}."
        return error_response(
            exc.status_code, message, dict(exc.headers or {}), request.headers.get("accept")
        )

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # Nobody is left to read this answer; the upload has already been rolled back.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return error_response(400, "The client disconnected before the request body was complete.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        request_id = request.scope.get("state", {}).get("request_id", "unknown")
        log.exception("unexpected error in request %s", request_id)
        return error_response(
            500,
            f"An unexpected error occurred; quote request id {request_id} to the operator.",
            accept=request.headers.get("accept"),
        )
