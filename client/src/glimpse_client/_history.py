"""An image's history (Glimpse): ``GET /v2/images/{id}/history``, newest first, page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from ._core import AsyncDriver, Call, Emit, Feed, SyncDriver, request
from ._models import HistoryEntry


def image_history(image_id: str, page_size: int | None, limit: int | None) -> Feed[HistoryEntry]:
    """The image's history entries, newest first, following ``next`` links; at most ``limit``."""
    params = {} if page_size is None else {"limit": str(page_size)}
    call: Call | None = Call("GET", f"/v2/images/{image_id}/history", params=params)
    given = 0
    while call is not None:
        body = (yield from request(call)).json()
        for item in body["history"]:
            if limit is not None and given >= limit:
                return
            yield Emit(HistoryEntry.from_json(item))
            given += 1
        nxt = body.get("next")
        call = Call("GET", nxt) if nxt else None


class SyncHistory(SyncDriver):
    def image_history(
        self, image_id: str, *, page_size: int | None = None, limit: int | None = None
    ) -> Iterator[HistoryEntry]:
        """What happened to the image (imports, copies, cancels, uploads, status changes), newest
        first, page by page; at most ``limit`` entries when given."""
        yield from self._stream(image_history(image_id, page_size, limit))


class AsyncHistory(AsyncDriver):
    async def image_history(
        self, image_id: str, *, page_size: int | None = None, limit: int | None = None
    ) -> AsyncIterator[HistoryEntry]:
        """What happened to the image, newest first, page by page; at most ``limit`` entries."""
        async for entry in self._stream(image_history(image_id, page_size, limit)):
            yield entry
