"""Image data: upload and stage from a path, bytes or chunks; read as a stream or download into a
file, from an offset on with ``Range``."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

from ._core import CHUNK_SIZE, AsyncDriver, Body, Call, Emit, Feed, Flow, SyncDriver, open_body, read, send

ProgressCallback = Callable[[int, int | None], None]
DataSource = str | os.PathLike[str] | bytes | Iterable[bytes]


def _path_size(data: DataSource) -> int | None:
    if isinstance(data, str | os.PathLike):
        return Path(data).stat().st_size
    if isinstance(data, bytes):
        return len(data)
    return None


def _chunks(data: DataSource, on_progress: ProgressCallback | None, total: int | None) -> Iterator[bytes]:
    done = 0
    if isinstance(data, str | os.PathLike):
        with Path(data).open("rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                done += len(chunk)
                yield chunk
                if on_progress is not None:
                    on_progress(done, total)
        return
    source: Iterable[bytes] = [data] if isinstance(data, bytes) else data
    for chunk in source:
        done += len(chunk)
        yield chunk
        if on_progress is not None:
            on_progress(done, total)


#: The algorithms of RFC 9530 digest headers the server checks, by their hashlib names.
DIGEST_ALGORITHMS = {"sha256": "sha-256", "sha512": "sha-512"}


def content_digest(checksum: str) -> str:
    """``"sha256:<hex>"`` as an RFC 9530 ``Content-Digest`` header value (``sha-256=:<base64>:``);
    ValueError when it is not ``sha256:HEX`` or ``sha512:HEX`` of the right length."""
    algorithm, sep, value = checksum.partition(":")
    name = DIGEST_ALGORITHMS.get(algorithm.strip().lower())
    try:
        raw = bytes.fromhex(value.strip()) if sep and name else b""
    except ValueError:
        raw = b""
    if name is None or len(raw) != hashlib.new(algorithm.strip().lower()).digest_size:
        raise ValueError(
            f"checksum {checksum!r} must be sha256:HEX or sha512:HEX (the digests an upload can be "
            "checked against), e.g. sha256:9f86d08..."
        )
    return f"{name}=:{base64.b64encode(raw).decode()}:"


def _put(
    path: str,
    data: DataSource,
    on_progress: ProgressCallback | None,
    store: str | None,
    checksum: str | None,
) -> Flow[None]:
    """A data ``PUT`` of ``data``, sent as it is read; its size is announced when known, and with
    ``checksum`` its digest (the server keeps nothing when the data differs)."""
    total = _path_size(data)
    headers = {"Content-Type": "application/octet-stream"}
    if total is not None:
        headers["Content-Length"] = str(total)
    if store is not None:
        headers["X-Image-Meta-Store"] = store
    if checksum is not None:
        headers["Content-Digest"] = content_digest(checksum)
    return send(Call("PUT", path, headers=headers, content=_chunks(data, on_progress, total)))


def upload(
    image_id: str,
    data: DataSource,
    on_progress: ProgressCallback | None,
    store: str | None,
    checksum: str | None = None,
) -> Flow[None]:
    return _put(f"/v2/images/{image_id}/file", data, on_progress, store, checksum)


def stage(
    image_id: str, data: DataSource, on_progress: ProgressCallback | None, checksum: str | None = None
) -> Flow[None]:
    return _put(f"/v2/images/{image_id}/stage", data, on_progress, None, checksum)


class _Cut:
    """Follows a data stream that starts at byte ``start`` of the image: drops what lies before
    ``offset`` (a server that ignored ``Range`` sends everything) and reports the position."""

    def __init__(
        self, offset: int, start: int, total: int | None, on_progress: ProgressCallback | None
    ) -> None:
        self.skip = max(offset - start, 0)
        self.position = start
        self.total = total
        self.on_progress = on_progress

    def __call__(self, chunk: bytes) -> bytes:
        self.position += len(chunk)
        if self.skip:
            dropped = min(self.skip, len(chunk))
            self.skip -= dropped
            chunk = chunk[dropped:]
        if self.on_progress is not None and chunk:
            self.on_progress(self.position, self.total)
        return chunk


def _open_data(image_id: str, offset: int) -> Flow[tuple[Body, int] | None]:
    """The image's data asked from ``offset`` on, and the offset it really starts at (0 when the
    server ignored ``Range``); ``None`` when ``offset`` is at or past the end."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    call = Call("GET", f"/v2/images/{image_id}/file", headers=headers, stream=True, accepted=frozenset({416}))
    body = yield from open_body(call)
    if body.response.status_code == 416:
        return None
    return body, offset if body.response.status_code == 206 else 0


def _total(body: Body, start: int) -> int | None:
    length = body.response.headers.get("content-length")
    return int(length) + start if length is not None else None


def iter_data(image_id: str, offset: int, on_progress: ProgressCallback | None) -> Feed[bytes]:
    opened = yield from _open_data(image_id, offset)
    if opened is None:
        return
    body, start = opened
    cut = _Cut(offset, start, _total(body, start), on_progress)
    while (chunk := (yield from read(body))) is not None:
        if piece := cut(chunk):
            yield Emit(piece)


def download(image_id: str, path: str | os.PathLike[str], on_progress: ProgressCallback | None) -> Flow[int]:
    """Into ``path``, from its size on: appended after what the server sent from there, written
    anew when the server sent the whole image."""
    target = Path(path)
    offset = target.stat().st_size if target.exists() else 0
    opened = yield from _open_data(image_id, offset)
    if opened is None:
        return offset
    body, start = opened
    cut = _Cut(start, start, _total(body, start), on_progress)
    with target.open("ab" if start else "wb") as handle:
        while (chunk := (yield from read(body))) is not None:
            handle.write(cut(chunk))
    return cut.position


class SyncData(SyncDriver):
    def upload(
        self,
        image_id: str,
        data: DataSource,
        on_progress: ProgressCallback | None = None,
        *,
        store: str | None = None,
        checksum: str | None = None,
    ) -> None:
        """Upload image data from a file path, bytes or an iterable of byte chunks; into ``store``
        (``X-Image-Meta-Store``) instead of the server's default store when given. ``checksum``
        (``"sha256:<hex>"`` or ``"sha512:<hex>"``) is sent as ``Content-Digest``: data with another
        digest is refused (400) and not kept."""
        self._run(upload(image_id, data, on_progress, store, checksum))

    def stage(
        self,
        image_id: str,
        data: DataSource,
        on_progress: ProgressCallback | None = None,
        *,
        checksum: str | None = None,
    ) -> None:
        """Stage data for a ``glance-direct`` import; ``checksum`` as for :meth:`upload`."""
        self._run(stage(image_id, data, on_progress, checksum))

    def iter_data(
        self, image_id: str, *, offset: int = 0, on_progress: ProgressCallback | None = None
    ) -> Iterator[bytes]:
        """The image's data as a stream of chunks, from byte ``offset`` on (with ``Range``); never
        held whole in memory. ``on_progress(position, total)`` follows the position in the image."""
        yield from self._stream(iter_data(image_id, offset, on_progress))

    def download(
        self, image_id: str, path: str | os.PathLike[str], on_progress: ProgressCallback | None = None
    ) -> int:
        """Download into ``path``, resuming with ``Range`` when the file already holds a part."""
        return self._run(download(image_id, path, on_progress))


class AsyncData(AsyncDriver):
    async def upload(
        self,
        image_id: str,
        data: DataSource,
        on_progress: ProgressCallback | None = None,
        *,
        store: str | None = None,
        checksum: str | None = None,
    ) -> None:
        """Upload image data (see :meth:`Client.upload`)."""
        await self._run(upload(image_id, data, on_progress, store, checksum))

    async def stage(
        self,
        image_id: str,
        data: DataSource,
        on_progress: ProgressCallback | None = None,
        *,
        checksum: str | None = None,
    ) -> None:
        """Stage data for a ``glance-direct`` import (see :meth:`Client.stage`)."""
        await self._run(stage(image_id, data, on_progress, checksum))

    async def iter_data(
        self, image_id: str, *, offset: int = 0, on_progress: ProgressCallback | None = None
    ) -> AsyncIterator[bytes]:
        """The image's data as a stream of chunks (see :meth:`Client.iter_data`)."""
        async for chunk in self._stream(iter_data(image_id, offset, on_progress)):
            yield chunk

    async def download(
        self, image_id: str, path: str | os.PathLike[str], on_progress: ProgressCallback | None = None
    ) -> int:
        """Download into ``path``, resuming with ``Range`` when the file already holds a part."""
        return await self._run(download(image_id, path, on_progress))
