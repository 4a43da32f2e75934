"""What every store driver shares: the rule for object keys, the checks a write starts with, running
blocking calls in a thread pool, and the reader that hands out an object's bytes block by block.

The driver interface itself, ``ImageStore``, is a port (:mod:`glimpse.ports`), so that the services
and the task runner can use stores without importing any driver.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Final, TypeVar

from glimpse.errors import StorageError, StoreNotFound
from glimpse.ports import ImageStore
from glimpse.telemetry import metrics

_logger = logging.getLogger("glimpse.storage")

__all__ = [
    "KEY_PATTERN",
    "MAX_KEY_LENGTH",
    "BlockReader",
    "PrefixLocations",
    "check_write_arguments",
    "etag_md5",
    "raise_first_error",
    "run_blocking",
    "validate_key",
    "withdraw",
]

T = TypeVar("T")

MAX_KEY_LENGTH: Final = 200
KEY_PATTERN: Final = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_KEY_LENGTH - 1}}}")


def validate_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is usable as an object name in every store.

    A key is one path segment of 1 to 200 letters, digits, ``.``, ``_`` or ``-`` that starts with a
    letter or digit: it cannot escape a directory, cannot collide with a hidden temporary file and
    needs no quoting inside a location.
    """
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise ValueError(
            f"Store key {key!r} is not valid: use 1-{MAX_KEY_LENGTH} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )


_MD5_HEX: Final = re.compile(r"[0-9a-f]{32}")


def etag_md5(etag: str | None) -> str | None:
    """An HTTP ETag as an md5 in hex, when it has that shape (quotes stripped); else None."""
    value = (etag or "").strip().strip('"').lower()
    return value if _MD5_HEX.fullmatch(value) else None


class PrefixLocations:
    """Locations of the form ``<prefix><key>``, as the object stores write them: a driver sets
    ``id`` and ``_prefix`` (scheme, host and bucket or container) and inherits how a key becomes a
    location and back."""

    id: str
    _prefix: str

    def location_for(self, key: str) -> str:
        validate_key(key)
        return f"{self._prefix}{key}"

    def owns(self, location: str) -> bool:
        return self._key_of(location) is not None

    def _key_of(self, location: str) -> str | None:
        if not location.startswith(self._prefix):
            return None
        key = location[len(self._prefix) :]
        return key if KEY_PATTERN.fullmatch(key) else None

    def _require_key(self, location: str) -> str:
        """The key of ``location``; ``StoreNotFound`` when it is not one of this store's."""
        key = self._key_of(location)
        if key is None:
            _logger.info("store %s does not hold location %r", self.id, location)
            raise StoreNotFound(f"The image data could not be found in store '{self.id}'.")
        return key


async def withdraw(store: ImageStore, key: str) -> None:
    """Delete the object ``key`` that a write published just before it failed (cancelled while its
    last request ran, say), so that a write which raises leaves no object behind, as the store
    contract promises. Never raises an ``Exception``: it runs while another error is on its way."""
    try:
        await store.delete(store.location_for(key))
    except StoreNotFound:
        return
    except Exception as exc:
        _logger.warning("store %s could not withdraw the object %s of a failed write: %s", store.id, key, exc)


def check_write_arguments(key: str, max_size: int | None) -> None:
    """The argument checks every driver's ``write`` starts with (raises ``ValueError``)."""
    validate_key(key)
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be 0 or more, got {max_size}.")


async def run_blocking(
    executor: concurrent.futures.Executor | None,
    func: Callable[[], T],
    on_abandon: Callable[[T], None] | None = None,
) -> T:
    """Run the blocking ``func`` in ``executor`` and return its result.

    A thread cannot be interrupted, so when the awaiting task is cancelled this waits for ``func``
    to finish before re-raising the cancellation: clean-up that follows never races a request still
    in flight. A result nobody wants any more is handed to ``on_abandon``. ``executor`` None is the
    event loop's default pool.
    """
    future = asyncio.get_running_loop().run_in_executor(executor, func)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((future,))
        if not future.cancelled() and future.exception() is None and on_abandon is not None:
            on_abandon(future.result())
        raise


def raise_first_error(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Look at every finished future's outcome (so asyncio never reports one as not retrieved),
    then raise the first error among them, if any."""
    first: BaseException | None = None
    for future in futures:
        if future.cancelled():
            continue
        error = future.exception()
        if error is not None and first is None:
            first = error
    if first is not None:
        raise first


class BlockReader:
    """Async iterator over ``remaining`` bytes of one object, read in blocks of at most
    ``block_size`` by the blocking ``read(n)`` run in ``executor`` (see :func:`run_blocking`).

    Errors of ``read`` pass through ``translate()``, the driver's error translation. ``close`` (the
    file or the HTTP response) runs when the bytes run out, on an error, on :meth:`aclose` and, at the
    latest, when the iterator is garbage-collected, so an abandoned download never leaks a descriptor
    or a connection. ``read`` None is an empty object.
    """

    def __init__(
        self,
        store_id: str,
        *,
        read: Callable[[int], bytes] | None,
        close: Callable[[], object],
        remaining: int,
        block_size: int,
        executor: concurrent.futures.Executor | None,
        translate: Callable[[], AbstractContextManager[object]],
    ) -> None:
        self._store_id = store_id
        self._read = read
        self._closer: Callable[[], object] | None = close
        self._remaining = remaining
        self._block_size = block_size
        self._executor = executor
        self._translate = translate

    @classmethod
    def of_body(
        cls,
        store_id: str,
        body: Any,
        remaining: int,
        *,
        block_size: int,
        executor: concurrent.futures.Executor | None,
        translate: Callable[[], AbstractContextManager[object]],
    ) -> BlockReader:
        """A reader over an HTTP response body with a blocking ``read(n)`` and ``close()`` (an
        object store's GET); ``body`` None is an empty object."""
        return cls(
            store_id,
            read=None if body is None else body.read,
            close=(lambda: None) if body is None else body.close,
            remaining=remaining,
            block_size=block_size,
            executor=executor,
            translate=translate,
        )

    def __aiter__(self) -> BlockReader:
        return self

    async def __anext__(self) -> bytes:
        read = self._read
        if read is None or self._remaining <= 0:
            self._close()
            raise StopAsyncIteration
        wanted = min(self._block_size, self._remaining)
        try:
            with self._translate():
                data = await run_blocking(self._executor, lambda: read(wanted))
        except BaseException:
            self._close()
            raise
        if not data:
            self._close()
            raise StorageError(f"store '{self._store_id}' could not read the image data: it ended early.")
        self._remaining -= len(data)
        return data

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        closer, self._closer, self._read = self._closer, None, None
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()

    def __del__(self) -> None:
        self._close()


@contextlib.contextmanager
def counting_failures(store_id: str) -> Iterator[None]:
    """Count a :class:`StorageError` that leaves the block in ``glimpse_store_errors_total``, once
    however many blocks it crosses; a missing object is an answer, not a failure of the store."""
    try:
        yield
    except StorageError as exc:
        if not isinstance(exc, StoreNotFound) and not getattr(exc, "_counted", False):
            exc._counted = True  # type: ignore[attr-defined]
            metrics().store_errors.labels(store_id).inc()
        raise
