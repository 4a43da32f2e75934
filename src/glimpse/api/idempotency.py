"""The ``Idempotency-Key`` header of ``POST /v2/images``, ``PUT /v2/images/{id}/stage`` and
``POST /v2/images/{id}/import``: a request sent again with the same key gets the first answer.

A handler hands its work to :func:`once` (a JSON body, read whole) or :func:`stage_once` (a streamed
body, hashed as it passes). Without the header they just run it. With it, they ask
:class:`~glimpse.services.idempotency.IdempotencyService` for the key first: the work runs only for
the request that claims the key; a retry of the same request gets the stored answer (with
``Idempotent-Replayed: true``), another request under the same key 422, and a retry while the first
still runs 409 with ``Retry-After``. The rules are :mod:`glimpse.domain.idempotency`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

import anyio
from fastapi import Request
from starlette.responses import Response

from glimpse.api import deps
from glimpse.context import RequestContext
from glimpse.domain.idempotency import Claim, KeyRecord, StoredAnswer, fingerprint, parse_key
from glimpse.services.idempotency import IdempotencyService
from glimpse.streaming import rebuffer

HEADER: Final = "idempotency-key"
#: Set on an answer repeated from the key's first request.
REPLAYED_HEADER: Final = "Idempotent-Replayed"


def requested_key(request: Request) -> str | None:
    """The request's key; None without the header, 400 when it is malformed."""
    raw = request.headers.get(HEADER)
    return None if raw is None else parse_key(raw)


def _fingerprint(request: Request, body_digest: str, headers: Sequence[str]) -> str:
    meaning = [(name, request.headers.get(name, "")) for name in headers]
    return fingerprint(request.method, request.url.path, body_digest, meaning)


def replay(answer: StoredAnswer) -> Response:
    headers = dict(answer.headers)
    media_type = headers.pop("content-type", None)
    headers[REPLAYED_HEADER] = "true"
    return Response(answer.body, status_code=answer.status, headers=headers, media_type=media_type)


async def _run_claimed(
    service: IdempotencyService,
    claim: Claim,
    produce: Callable[[], Awaitable[Response]],
    fingerprint_of: Callable[[], str],
) -> Response:
    try:
        response = await produce()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await service.abandon(claim)
        raise
    answer = StoredAnswer.of(response.status_code, response.headers.items(), bytes(response.body))
    with anyio.CancelScope(shield=True):
        await service.finish(claim, fingerprint_of(), answer)
    return response


async def once(
    request: Request,
    ctx: RequestContext,
    body: bytes,
    produce: Callable[[], Awaitable[Response]],
    *,
    headers: Sequence[str] = (),
) -> Response:
    """``produce()`` the answer, at most once per key: see the module docstring. ``body`` is the
    request's whole body; ``headers`` name the request headers that change its meaning."""
    key = requested_key(request)
    if key is None:
        return await produce()
    digest = _fingerprint(request, hashlib.sha256(body).hexdigest(), headers)
    service = IdempotencyService(deps.runtime(request))
    begun = await service.begin(ctx, key, digest)
    if isinstance(begun, KeyRecord):
        return replay(service.check(begun, digest))
    return await _run_claimed(service, begun, produce, lambda: digest)


async def _hashed(chunks: AsyncIterator[bytes], digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """The body in 1 MiB blocks, each added to ``digest`` in a worker thread (off the event loop;
    the stage service reads ahead, so hashing a block overlaps the write of the one before)."""
    async for block in rebuffer(chunks):
        await anyio.to_thread.run_sync(digest.update, block)
        yield block


async def stage_once(
    request: Request,
    ctx: RequestContext,
    produce: Callable[[AsyncIterator[bytes]], Awaitable[Response]],
    *,
    headers: Sequence[str] = (),
) -> Response:
    """:func:`once` for a streamed body: ``produce(chunks)`` consumes it. The body's digest is known
    only once it has streamed, so a retry of a request that was answered reads (and hashes) the
    whole body before it gets the answer or a 422; the body is never held in memory."""
    key = requested_key(request)
    if key is None:
        return await produce(request.stream())
    digest = hashlib.sha256()
    service = IdempotencyService(deps.runtime(request))
    begun = await service.begin(ctx, key, None)

    def fingerprint_of() -> str:
        return _fingerprint(request, digest.hexdigest(), headers)

    if isinstance(begun, KeyRecord):
        async for _ in _hashed(request.stream(), digest):
            pass
        return replay(service.check(begun, fingerprint_of()))
    return await _run_claimed(
        service, begun, lambda: produce(_hashed(request.stream(), digest)), fingerprint_of
    )
