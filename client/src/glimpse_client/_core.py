"""Flows written once for both clients, and the two drivers that run them.

A flow is a generator that does no I/O. It yields what it needs done, and the driver sends back the
outcome:

* :class:`Call`: a request to send; the outcome is its ``httpx.Response`` (a :class:`Body` when
  ``stream`` is set, whose content is then read with :class:`Read`);
* :class:`Read`: the next chunk of an open body; the outcome is the chunk, ``None`` at its end;
* :class:`Sleep`: a pause; the outcome is ``None``.

An error answer (or a broken connection) is thrown into the flow where it yielded, so a flow
catches it as if it had sent the request itself. What the flow returns is the result. A flow that
feeds an iterator (pages of images, chunks of data, listings of tasks) also yields :class:`Emit`
with each item. :class:`SyncDriver` runs flows with ``httpx.Client``, :class:`AsyncDriver` with
``httpx.AsyncClient``; they are the only places that send, read or sleep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

import httpx

from ._config import ClientConfig
from ._exceptions import Conflict, GlimpseClientError, TransportError, error_from_response
from ._glance import error_body

CHUNK_SIZE = 64 * 1024

R = TypeVar("R")
T = TypeVar("T")


@dataclass
class Call:
    """Everything needed to send one request. ``content`` is a request body sent as it is
    iterated; ``accepted`` lists the error statuses the flow reads itself instead of raising."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    content: Iterable[bytes] | None = None
    stream: bool = False
    accepted: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Body:
    """A streamed response: its status and headers, and the chunks of its content, which only the
    driver that opened it reads (an iterator for the sync driver, an async one for the other)."""

    response: httpx.Response
    chunks: Any


@dataclass(frozen=True)
class Read:
    body: Body


@dataclass(frozen=True)
class Emit(Generic[T]):
    """An item for the caller of a feeding flow."""

    value: T


Step = Call | Read | Sleep
#: A flow returning ``R``; the driver sends back the outcome of each step (see the module docstring).
Flow = Generator[Step, Any, R]
#: A flow that feeds an iterator of ``T``.
Feed = Generator[Step | Emit[T], Any, None]


@dataclass
class Traits:
    """What the server turned out to offer, learnt from its answers (``None``: not known yet)."""

    watches: bool | None = None
    single_task_route: bool | None = None


def request(call: Call) -> Flow[httpx.Response]:
    response: httpx.Response = yield call
    return response


def single(call: Call, parse: Callable[[httpx.Response], R]) -> Flow[R]:
    """One request whose answer ``parse`` turns into the result."""
    response = yield from request(call)
    return parse(response)


def send(call: Call) -> Flow[None]:
    """One request whose answer has nothing to read."""
    yield from request(call)


def open_body(call: Call) -> Flow[Body]:
    body: Body = yield call
    return body


def read(body: Body) -> Flow[bytes | None]:
    chunk: bytes | None = yield Read(body)
    return chunk


def pause(seconds: float) -> Flow[None]:
    yield Sleep(seconds)


IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotent(call: Call, config: ClientConfig, key: str | None = None) -> Flow[httpx.Response]:
    """Send ``call`` with an ``Idempotency-Key`` (``key``, or a new UUID) and send it again, with the
    same key, when the connection breaks or times out before an answer: ``config.retries`` times at
    most, after ``config.retry_backoff`` seconds doubled each time. A retry that finds the first
    request still being processed (409 with ``retry_after``) waits that long and tries again, within
    the same bound. The server answers a retry with the first request's answer, so the work is done
    once. ``call.content`` must be None (a streamed body cannot be sent twice)."""
    call.headers = {**call.headers, IDEMPOTENCY_HEADER: key or str(uuid.uuid4())}
    delay = config.retry_backoff
    for retry in range(config.retries + 1):
        last = retry == config.retries
        try:
            return (yield from request(call))
        except TransportError:
            if last:
                raise
            wait = delay
            delay *= 2
        except Conflict as exc:
            if retry == 0 or last or exc.retry_after is None:
                raise
            wait = exc.retry_after
        yield from pause(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _resume(flow: Generator[Any, Any, Any], outcome: Any) -> Any:
    """The flow's next step once ``outcome`` is sent (or, an error, thrown) into it; raises
    StopIteration when the flow returns."""
    if isinstance(outcome, GlimpseClientError):
        return flow.throw(outcome)
    return flow.send(outcome)


def _checked(call: Call, response: httpx.Response) -> httpx.Response:
    if response.is_error and response.status_code not in call.accepted:
        raise error_from_response(response, error_body(response))
    return response


def _transport_error(exc: httpx.TransportError) -> TransportError:
    return TransportError(str(exc) or type(exc).__name__)


async def _async_chunks(content: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in content:
        yield chunk


class _Driver:
    """What both drivers share: the configuration and what was learnt about the server."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._traits = Traits()

    def _client_args(self) -> dict[str, Any]:
        return {
            "base_url": self.config.endpoint.rstrip("/"),
            "headers": self.config.headers(),
            "timeout": self.config.timeout,
            "auth": self.config.auth,
            "verify": self.config.verify,
        }

    def _timeout(self, call: Call) -> float:
        return call.timeout if call.timeout is not None else self.config.timeout


class SyncDriver(_Driver):
    """Runs flows with an ``httpx.Client``. Use as a context manager or call :meth:`close`."""

    def __init__(self, config: ClientConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(config)
        self._http = httpx.Client(transport=transport, **self._client_args())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, flow: Flow[R]) -> R:
        with ExitStack() as bodies:
            outcome: Any = None
            while True:
                try:
                    step = _resume(flow, outcome)
                except StopIteration as end:
                    result: R = end.value
                    return result
                outcome = self._perform(step, bodies)

    def _stream(self, feed: Feed[T]) -> Iterator[T]:
        with ExitStack() as bodies:
            outcome: Any = None
            while True:
                try:
                    step = _resume(feed, outcome)
                except StopIteration:
                    return
                if isinstance(step, Emit):
                    outcome = None
                    yield step.value
                else:
                    outcome = self._perform(step, bodies)

    def _perform(self, step: Step, bodies: ExitStack) -> Any:
        """Do one step: its outcome, or the error to throw into the flow."""
        try:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                return None
            if isinstance(step, Read):
                return next(step.body.chunks, None)
            request = self._http.build_request(
                step.method, step.path, params=step.params, json=step.json, headers=step.headers,
                content=step.content, timeout=self._timeout(step),
            )  # fmt: skip
            response = self._http.send(request, stream=step.stream)
            if not step.stream:
                return _checked(step, response)
            bodies.callback(response.close)
            if response.is_error:
                response.read()
            return Body(_checked(step, response), response.iter_bytes(CHUNK_SIZE))
        except httpx.TransportError as exc:
            return _transport_error(exc)
        except GlimpseClientError as exc:
            return exc


class AsyncDriver(_Driver):
    """Runs flows with an ``httpx.AsyncClient``. Use as an async context manager or await
    :meth:`aclose`."""

    def __init__(self, config: ClientConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(config)
        self._http = httpx.AsyncClient(transport=transport, **self._client_args())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, flow: Flow[R]) -> R:
        async with AsyncExitStack() as bodies:
            outcome: Any = None
            while True:
                try:
                    step = _resume(flow, outcome)
                except StopIteration as end:
                    result: R = end.value
                    return result
                outcome = await self._perform(step, bodies)

    async def _stream(self, feed: Feed[T]) -> AsyncIterator[T]:
        async with AsyncExitStack() as bodies:
            outcome: Any = None
            while True:
                try:
                    step = _resume(feed, outcome)
                except StopIteration:
                    return
                if isinstance(step, Emit):
                    outcome = None
                    yield step.value
                else:
                    outcome = await self._perform(step, bodies)

    async def _perform(self, step: Step, bodies: AsyncExitStack) -> Any:
        """Do one step: its outcome, or the error to throw into the flow."""
        try:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                return None
            if isinstance(step, Read):
                return await anext(step.body.chunks, None)
            content = None if step.content is None else _async_chunks(step.content)
            request = self._http.build_request(
                step.method, step.path, params=step.params, json=step.json, headers=step.headers,
                content=content, timeout=self._timeout(step),
            )  # fmt: skip
            response = await self._http.send(request, stream=step.stream)
            if not step.stream:
                return _checked(step, response)
            bodies.push_async_callback(response.aclose)
            if response.is_error:
                await response.aread()
            return Body(_checked(step, response), response.aiter_bytes(CHUNK_SIZE))
        except httpx.TransportError as exc:
            return _transport_error(exc)
        except GlimpseClientError as exc:
            return exc
