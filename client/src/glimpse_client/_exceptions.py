"""The SDK's exceptions. Every error the SDK raises is one of these::

GlimpseClientError
├── TransportError            the server could not be reached or the connection broke
├── APIError                  the server answered with an error status
│   ├── ClientError           4xx
│   │   ├── BadRequest        400
│   │   ├── Forbidden         403
│   │   ├── NotFound          404
│   │   ├── Conflict          409 (``.lock`` when the image's import lock caused it)
│   │   └── TooLarge          413
│   └── ServerError           5xx
├── TaskFailed                a watched task ended in ``failure``
└── TaskTimeout               waiting for a task ran out (also a ``TimeoutError``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ._models import Task


class GlimpseClientError(Exception):
    """Base of every exception raised by glimpse_client."""


class TransportError(GlimpseClientError):
    """The request did not get an answer (connection refused, reset, timed out...)."""


class APIError(GlimpseClientError):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, request_id: str | None, body: Any) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.request_id = request_id
        self.body = body


class ClientError(APIError):
    """A 4xx answer."""


class BadRequest(ClientError):
    """400."""


class Forbidden(ClientError):
    """403."""


class NotFound(ClientError):
    """404."""


class Conflict(ClientError):
    """409. ``lock`` holds Glimpse's description of the import lock holder, when the server sent one;
    ``retry_after`` the seconds to wait when the first request sent with the same ``Idempotency-Key``
    is still being processed (else ``None``)."""

    def __init__(self, status: int, message: str, request_id: str | None, body: Any) -> None:
        super().__init__(status, message, request_id, body)
        error = _error_object(body)
        lock = error.get("lock")
        self.lock: dict[str, Any] | None = lock if isinstance(lock, dict) else None
        wait = error.get("retry_after")
        self.retry_after: float | None = None
        if isinstance(wait, int | float) and not isinstance(wait, bool) and wait >= 0:
            self.retry_after = float(wait)


class TooLarge(ClientError):
    """413."""


class ServerError(APIError):
    """A 5xx answer."""


class TaskFailed(GlimpseClientError):
    """A task ended in ``failure``; ``task`` is its last state."""

    def __init__(self, task: Task) -> None:
        super().__init__(task.message or f"task {task.id} failed")
        self.task = task


class TaskTimeout(GlimpseClientError, TimeoutError):
    """Waiting for a task ran out. Nothing was changed on the server."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
}


def _error_object(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            return inner
        return body
    return {}


def error_from_response(response: httpx.Response, body: Any | None = None) -> APIError:
    """The exception for an error answer; the only place that maps statuses to classes."""
    if body is None:
        try:
            body = response.json()
        except ValueError:
            body = response.text
    message = _error_object(body).get("message")
    if not isinstance(message, str):
        message = body if isinstance(body, str) and body else response.reason_phrase
    request_id = response.headers.get("x-openstack-request-id")
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ClientError)
    return cls(status, message, request_id, body)
