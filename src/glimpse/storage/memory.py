"""``InMemoryStore``: a real, small store that keeps objects as ``bytes`` in a dict.

It follows the same contract as the other drivers (the shared contract suite runs against it), so
unit tests and local development can use it in place of a real backend. Locations look like
``memory://<store id>/<key>``. An object is put into the dict only once its write has succeeded,
which makes failed, oversized and cancelled writes leave nothing behind and rewrites atomic.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Final

from glimpse.errors import StoreNotFound, TooLarge
from glimpse.ports import Capabilities, ObjectStat, StoredObject, StoreEntry
from glimpse.storage.base import check_write_arguments, validate_key

__all__ = ["InMemoryStore"]

LOCATION_SCHEME: Final = "memory://"
DEFAULT_CHUNK_SIZE: Final = 64 * 1024


async def _slices(data: bytes, start: int, stop: int, chunk_size: int) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for position in range(start, stop, chunk_size):
        yield bytes(view[position : min(position + chunk_size, stop)])


class InMemoryStore:
    """An :class:`~glimpse.storage.base.ImageStore` that lives and dies with the process."""

    def __init__(
        self,
        id: str = "memory",
        description: str = "",
        weight: int = 0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 byte, got {chunk_size}.")
        self.id = id
        self.type = "memory"
        self.description = description
        self.weight = weight
        self.capabilities = Capabilities.WRITE | Capabilities.RANGE_READ
        self.chunk_size = chunk_size
        self._objects: dict[str, bytes] = {}
        self._modified: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"InMemoryStore(id={self.id!r}, objects={len(self._objects)})"

    async def objects(self) -> list[StoreEntry]:
        return [StoreEntry(key, self._modified[key]) for key in self.peek_keys()]

    def peek_keys(self) -> list[str]:
        """The keys of every stored object, sorted, without awaiting (for assertions in tests)."""
        return sorted(self._objects)

    def location_for(self, key: str) -> str:
        """The location an object written under ``key`` has."""
        validate_key(key)
        return f"{LOCATION_SCHEME}{self.id}/{key}"

    def owns(self, location: str) -> bool:
        """Whether ``location`` names an object of this store (whether or not it exists)."""
        return self._key_of(location) is not None

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        check_write_arguments(key, max_size)
        buffer = bytearray()
        async for chunk in chunks:
            if max_size is not None and len(buffer) + len(chunk) > max_size:
                raise TooLarge(f"The image data is larger than the limit of {max_size} bytes.")
            buffer += chunk
        # Publishing is a wait, as in every real store: a cancellation that arrived while the data
        # was read lands here, before the object exists, and not after the write has returned.
        await asyncio.sleep(0)
        self._objects[key] = bytes(buffer)
        self._modified[key] = datetime.now(UTC)
        return StoredObject(location=self.location_for(key), size=len(buffer))

    async def open(self, location: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if offset < 0:
            raise ValueError(f"offset must be 0 or more, got {offset}.")
        if length is not None and length < 0:
            raise ValueError(f"length must be 0 or more, got {length}.")
        data = self._objects[self._require_key(location)]
        start = min(offset, len(data))
        stop = len(data) if length is None else min(len(data), start + length)
        return _slices(data, start, stop, self.chunk_size)

    async def delete(self, location: str) -> None:
        key = self._require_key(location)
        del self._objects[key], self._modified[key]

    async def stat(self, location: str) -> ObjectStat:
        """Size and md5: the bytes are at hand, so the md5 costs no read of a backend."""
        data = self._objects[self._require_key(location)]
        return ObjectStat(size=len(data), md5=hashlib.md5(data, usedforsecurity=False).hexdigest())

    async def probe(self) -> None:
        """Always usable: the bytes live in this process."""

    async def sweep_unfinished(self, older_than: datetime) -> list[str]:
        """Nothing to sweep: an unfinished write keeps its bytes in its own buffer, which dies with
        the write (or the process); only a finished one reaches the store."""
        return []

    def describe(self) -> Mapping[str, object]:
        return {"chunk_size": self.chunk_size}

    def _key_of(self, location: str) -> str | None:
        prefix = f"{LOCATION_SCHEME}{self.id}/"
        if not location.startswith(prefix):
            return None
        key = location[len(prefix) :]
        try:
            validate_key(key)
        except ValueError:
            return None
        return key

    def _require_key(self, location: str) -> str:
        key = self._key_of(location)
        if key is None or key not in self._objects:
            raise StoreNotFound(f"The image data could not be found in store '{self.id}'.")
        return key
