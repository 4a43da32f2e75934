"""The one interface every image store driver implements, and its result and error types.

A driver moves bytes and nothing else: it knows no images, statuses or hashes. Callers hand it an
async iterator of chunks and get back a :class:`StoredObject`; reading returns an async iterator of
chunks, optionally for a byte range. Every driver translates its own backend's errors into the
``StorageError`` tree of :mod:`glimpse.errors` in one place, so no caller imports a backend SDK.
"""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from glimpse.errors import StorageError, StoreFull, StoreNotFound

__all__ = [
    "Capabilities",
    "ImageStore",
    "StorageError",
    "StoreFull",
    "StoreNotFound",
    "StoredObject",
    "check_write_arguments",
    "validate_key",
]

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


class Capabilities(enum.Flag):
    """Optional abilities of a store, checked by callers instead of the store's type."""

    NONE = 0
    WRITE = enum.auto()
    RANGE_READ = enum.auto()
    SERVER_SIDE_COPY = enum.auto()


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a successful write produced: where the bytes are and how many there are."""

    location: str
    size: int


@runtime_checkable
class ImageStore(Protocol):
    """A place image bytes live in.

    Contract (checked for every driver by ``tests/integration/test_store_contract.py``):

    * ``write(key, chunks)`` consumes the whole iterator and returns the object's location and size.
      The object becomes visible under its location only once the write has succeeded; if the
      iterator raises, the task is cancelled or the backend fails, no partial object is left
      behind and the error propagates (backend failures as ``StorageError``). ``max_size`` makes the
      write fail with ``glimpse.errors.TooLarge`` as soon as more than that many bytes arrive.
      Writing the same key again replaces the object atomically.
    * ``await open(location, offset, length)`` returns an async iterator of the bytes from ``offset``
      (``length`` bytes, or to the end when ``None``). A missing object raises ``StoreNotFound`` from
      the ``await``, before any chunk is produced, so an HTTP handler can still answer 404.
    * ``delete(location)`` removes the object; a missing object raises ``StoreNotFound``.
    * ``size(location)`` returns the stored size; missing → ``StoreNotFound``.
    * ``location_for(key)`` is the location an object written under ``key`` has (whether or not it
      exists), so callers never build a store's locations themselves; a bad key raises ``ValueError``.
    * ``await keys()`` lists the keys of the complete objects in the store, sorted; data of writes
      still in progress or abandoned is not among them.
    * ``owns(location)`` tells whether a location belongs to this store.
    * ``describe()`` returns the type-specific ``properties`` of ``GET /v2/info/stores/detail``.
    """

    id: str
    type: str
    description: str
    weight: int
    capabilities: Capabilities

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject: ...

    async def open(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]: ...

    async def delete(self, location: str) -> None: ...

    async def size(self, location: str) -> int: ...

    async def keys(self) -> list[str]: ...

    def location_for(self, key: str) -> str: ...

    def describe(self) -> Mapping[str, object]: ...

    def owns(self, location: str) -> bool: ...


def check_write_arguments(key: str, max_size: int | None) -> None:
    """The argument checks every driver's ``write`` starts with (raises ``ValueError``)."""
    validate_key(key)
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be 0 or more, got {max_size}.")
