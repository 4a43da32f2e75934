"""Image data use cases: upload, download (ranged), and removing data from stores.

Database work runs in short transactions on worker threads; bytes stream between the HTTP body and
the store without ever being held whole in memory. Status changes are compare-and-swap, so a
concurrent delete or second upload is detected instead of overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from glimpse.context import RequestContext
from glimpse.domain import notifications as events
from glimpse.domain.history import HistoryAction, HistoryOutcome
from glimpse.domain.images import Image, ImageStatus, Location
from glimpse.domain.imports import ExpectedDigest
from glimpse.domain.inspection import content_judge
from glimpse.domain.quotas import Resource
from glimpse.errors import (
    Conflict,
    DatabaseUnavailable,
    DigestMismatch,
    Forbidden,
    FormatMismatch,
    GlimpseError,
    ImageGone,
    InvalidInput,
    NotFound,
    OverQuota,
    RangeNotSatisfiable,
    StorageError,
    StoreMismatch,
    StoreNotFound,
    TooLarge,
    UnsafeImage,
)
from glimpse.ports import ImageStore, Ports, Repositories, verify_write
from glimpse.services.images import ImageService
from glimpse.services.quotas import Reservation, admit, limits_for, release_reservation
from glimpse.streaming import ContentInspector, StreamHasher, counted, prefetch
from glimpse.telemetry import metrics

log = logging.getLogger(__name__)

#: Seconds between two touches of an image while its data is uploaded (``[task] upload_stale_after``
#: is at least a minute, so a live upload always shows a recent sign of life).
UPLOAD_TOUCH_INTERVAL = 15.0
#: Seconds between the first two tries to undo an upload the database failed; doubled each time, up
#: to :data:`SETTLE_RETRY_MAX`.
SETTLE_RETRY = 0.5
SETTLE_RETRY_MAX = 10.0
#: The background undos under way (a reference keeps each task alive until it ends).
_settling: set[asyncio.Task[None]] = set()


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A single HTTP byte range: ``start``/``end`` inclusive; ``suffix`` for ``bytes=-N``."""

    start: int | None
    end: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """The inclusive (first, last) byte offsets within an object of ``size`` bytes."""
        if self.start is None:
            length = self.end or 0
            if length == 0 or size == 0:
                raise RangeNotSatisfiable(size)
            return max(0, size - length), size - 1
        if self.start >= size:
            raise RangeNotSatisfiable(size)
        last = size - 1 if self.end is None else min(self.end, size - 1)
        return self.start, last


@dataclass(frozen=True, slots=True)
class Download:
    image: Image
    stream: AsyncIterator[bytes]
    length: int
    total: int
    first: int | None = None
    last: int | None = None

    @property
    def partial(self) -> bool:
        return self.first is not None


def _pick(expected: Sequence[ExpectedDigest], configured: str) -> ExpectedDigest | None:
    """The one digest to check: the one computed anyway when there is one, else the first."""
    for digest in expected:
        if digest.algorithm in ("md5", configured):
            return digest
    return expected[0] if expected else None


def _digest_check(expected: ExpectedDigest) -> Callable[[StreamHasher], None]:
    def check(hasher: StreamHasher) -> None:
        actual = hasher.digest(expected.algorithm)
        if actual != expected.value:
            raise DigestMismatch(
                f"The uploaded data has {expected.algorithm} {actual}, but the request's digest header "
                f"says {expected.value}."
            )

    return check


def upload_hasher(
    algorithm: str, inspector: ContentInspector[Any] | None, expected: Sequence[ExpectedDigest]
) -> StreamHasher:
    """The hashing (and inspection) of data a client sends, ``PUT /file`` and ``PUT /stage`` alike:
    with ``expected`` (the ``Content-Digest``/``Repr-Digest`` headers), one of those digests is
    checked once the last byte is in, before the store keeps the data (``DigestMismatch``)."""
    check = _pick(expected, algorithm)
    return StreamHasher(
        algorithm,
        inspector,
        also=check.algorithm if check else None,
        on_end=_digest_check(check) if check else None,
    )


async def touching(ports: Ports, image_id: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks``, touching the image every :data:`UPLOAD_TOUCH_INTERVAL` seconds: the sign of life
    that keeps the housekeeping from taking an image whose data is coming (an upload's ``saving``,
    a stage's ``uploading``) back to ``queued``."""
    loop = asyncio.get_running_loop()
    due = loop.time() + UPLOAD_TOUCH_INTERVAL
    async for chunk in chunks:
        if loop.time() >= due:
            try:
                await ports.run(functools.partial(_alive, ports, image_id))
            except GlimpseError as exc:  # the write itself fails soon enough if this persists
                log.warning("image %s: could not record the transfer's progress: %s", image_id, exc)
            due = loop.time() + UPLOAD_TOUCH_INTERVAL
        yield chunk


def _alive(ports: Ports, image_id: str, repos: Repositories) -> None:
    """A transfer's sign of life: the image's ``updated_at`` and its quota reservation's expiry."""
    repos.images.touch(image_id)
    repos.quotas.renew(image_id, ports.clock() + timedelta(seconds=ports.settings.reservation_timeout))


async def undo_failed(
    ports: Ports,
    image_id: str,
    what: str,
    undo: Callable[[], Awaitable[bool]],
    then: Callable[[], Awaitable[None]],
) -> None:
    """Undo a failed upload or stage (``what``): ``undo`` puts its image back to ``queued`` in one
    transaction and says whether it did (False: the image had left that state meanwhile); ``then``
    (removing the data written) runs only after an undo that did. When the database does not
    answer, the undo is tried again in the background, every few seconds, until it does (for up to
    ``upload_stale_after``; after that the housekeeping puts the image back)."""
    try:
        undone = await undo()
    except DatabaseUnavailable as exc:
        log.warning(
            "image %s: the failed %s cannot be undone now (%s); trying again in the background",
            image_id,
            what,
            exc.message,
        )
        job = asyncio.get_running_loop().create_task(_undo_when_back(ports, image_id, what, undo, then))
        _settling.add(job)
        job.add_done_callback(_settling.discard)
        return
    if undone:
        await then()


async def _undo_when_back(
    ports: Ports,
    image_id: str,
    what: str,
    undo: Callable[[], Awaitable[bool]],
    then: Callable[[], Awaitable[None]],
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ports.settings.upload_stale_after
    delay = SETTLE_RETRY
    while True:
        await asyncio.sleep(delay)
        try:
            undone = await undo()
        except DatabaseUnavailable:
            if loop.time() + delay > deadline:
                log.warning(
                    "image %s: the database still does not answer; the housekeeping puts the image "
                    "back to 'queued' once it does",
                    image_id,
                )
                return
            delay = min(delay * 2, SETTLE_RETRY_MAX)
            continue
        if undone:
            log.info("image %s: the database answers again; the failed %s is undone", image_id, what)
            await then()
        return


class ImageDataService:
    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.settings = ports.settings

    def _images(self, repos: Repositories) -> ImageService:
        return ImageService(repos, self.settings, self.ports.policy, self.ports.clock)

    def store_for(self, store_id: str | None) -> ImageStore:
        if store_id is None:
            return self.ports.stores.default
        if store_id not in self.ports.stores.ids():
            raise InvalidInput(
                f"Store '{store_id}' is not enabled at this site; enabled stores are: "
                f"{', '.join(self.ports.stores.ids())}."
            )
        return self.ports.stores.get(store_id)

    # -- upload ------------------------------------------------------------------------------------
    async def upload(
        self,
        ctx: RequestContext,
        image_id: str,
        body: AsyncIterator[bytes],
        *,
        content_length: int | None,
        store_id: str | None,
        expected: Sequence[ExpectedDigest] = (),
    ) -> None:
        """Store the body as the image's data. ``expected``: digests the client gave (the
        ``Content-Digest``/``Repr-Digest`` headers); one of them is checked before the data is kept."""
        store = self.store_for(store_id)

        def owner_of(repos: Repositories) -> str | None:
            return self._images(repos).load(ctx, image_id, "upload_image")[0].owner

        owner = await self.ports.run(owner_of, readonly=True)
        limits = await limits_for(self.ports, owner)
        reservation = Reservation(self.ports, limits, owner, Resource.IMAGE_SIZE_TOTAL, image_id)

        def begin(repos: Repositories) -> tuple[int, str | None]:
            images = self._images(repos)
            image, _ = images.load(ctx, image_id, "upload_image")
            if image.owner != ctx.project_id and not ctx.is_admin:
                raise Forbidden("Only the image owner can upload its data.")
            if image.status != ImageStatus.QUEUED:
                raise Conflict(
                    f"Image {image_id} is '{image.status}'; data can only be uploaded to a queued image."
                )
            if image.disk_format is None or image.container_format is None:
                raise InvalidInput(
                    "Properties disk_format and container_format must be set before "
                    "uploading data; PATCH the image first."
                )
            limit = self.settings.image_size_cap
            if content_length is not None and content_length > limit:
                raise self._too_large(limit)
            if image.owner != owner:
                raise Conflict(f"The owner of image {image_id} changed during the request; upload again.")
            if image.owner is not None:
                admit(repos, limits, image.owner, Resource.IMAGE_COUNT_UPLOADING, self.ports.clock())
                if content_length is not None and reservation.enforced:
                    reservation.grow(repos, content_length, content_length)
            images.images.set_status(image.id, [ImageStatus.QUEUED], ImageStatus.SAVING)
            saving = replace(image, status=ImageStatus.SAVING)
            images.announce(ctx, events.IMAGE_PREPARE, events.image_payload(saving))
            return limit, image.disk_format

        limit, disk_format = await self.ports.run(begin)
        inspector = ContentInspector(content_judge(disk_format, self.settings.content_rules))
        hasher = upload_hasher(self.settings.hashing_algorithm, inspector, expected)
        try:
            stored = await store.write(
                image_id,
                prefetch(hasher.wrap(touching(self.ports, image_id, reservation.metered(body)))),
                max_size=limit,
            )
        except BaseException as exc:
            await self._revert_to_queued(ctx, image_id, _failure_text(exc))
            if isinstance(exc, OverQuota):
                exc.message += " Nothing was stored and the image is still queued."
                log.info("image %s: upload refused: %s", image_id, exc.message)
                raise exc from None
            if isinstance(exc, TooLarge):
                raise self._too_large(limit) from None
            if isinstance(exc, FormatMismatch | UnsafeImage | DigestMismatch):
                exc.message += " Nothing was stored and the image is still queued."
                log.info("image %s: upload refused: %s", image_id, exc.message)
                raise exc from None
            raise
        if content_length is not None and stored.size != content_length:
            await self._discard(store, stored.location)
            await self._revert_to_queued(
                ctx, image_id, f"The body had {stored.size} bytes but Content-Length said {content_length}."
            )
            raise InvalidInput(
                f"The request body had {stored.size} bytes but Content-Length said "
                f"{content_length}; nothing was stored."
            )
        try:
            await verify_write(store, stored, size=hasher.size, md5=hasher.checksum)
        except StoreMismatch as exc:
            await self._revert_to_queued(ctx, image_id, exc.message)
            exc.message += " Nothing was stored and the image is still queued; upload again."
            raise

        verdict = inspector.verdict
        for warning in verdict.warnings if verdict else ():
            log.warning("image %s: a safety check failed but is not fatal: %s", image_id, warning)

        def finish(repos: Repositories) -> None:
            images = self._images(repos)
            repo = images.images
            repo.set_status(
                image_id,
                [ImageStatus.SAVING],
                ImageStatus.ACTIVE,
                size=stored.size,
                virtual_size=verdict.virtual_size if verdict else None,
                checksum=hasher.checksum,
                os_hash_algo=hasher.algorithm,
                os_hash_value=hasher.multihash,
            )
            repo.add_location(
                image_id, Location(store_id=store.id, url=stored.location, metadata={"store": store.id})
            )
            images.record(
                ctx,
                image_id,
                HistoryAction.UPLOAD,
                stores=(store.id,),
                bytes_moved=stored.size,
                status=ImageStatus.ACTIVE,
            )
            if images.outbox.wants(events.IMAGE_UPLOAD) or images.outbox.wants(events.IMAGE_ACTIVATE):
                payload = events.image_payload(repo.get(image_id))
                images.announce(ctx, events.IMAGE_UPLOAD, payload)
                images.announce(ctx, events.IMAGE_ACTIVATE, payload)
            repos.quotas.release(image_id)  # the size counts through the image's location now

        try:
            await self.ports.run(finish)
        except (NotFound, Conflict):
            await release_reservation(self.ports, image_id)
            await self._discard(store, stored.location)
            raise ImageGone(
                f"Image {image_id} was deleted while its data was being uploaded; the data was discarded."
            ) from None
        except DatabaseUnavailable as exc:
            # Whether the commit went through is unknown until the database answers again: the data
            # goes only once the image is known to be back in 'queued' (never under an active image).
            await self._revert_to_queued(
                ctx,
                image_id,
                f"The database stopped answering: {exc.message}",
                discard=(store, stored.location),
            )
            exc.message += (
                f" The uploaded data was not kept: image {image_id} goes back to 'queued' as soon as "
                "the database answers; upload it again then."
            )
            raise
        metrics().bytes.labels(store.id, "uploaded").inc(stored.size)

    def _too_large(self, limit: int) -> TooLarge:
        return TooLarge(
            f"Image data is larger than the {limit} bytes image_size_cap allows; nothing "
            "was stored and the image is still queued."
        )

    async def _revert_to_queued(
        self,
        ctx: RequestContext,
        image_id: str,
        reason: str,
        discard: tuple[ImageStore, str] | None = None,
    ) -> None:
        """Put a failed upload's image back to ``queued`` (and then remove ``discard``, the object it
        wrote), now or, when the database does not answer, as soon as it does (:func:`undo_failed`)."""

        async def then() -> None:
            if discard is not None:
                await self._discard(*discard)

        await undo_failed(
            self.ports, image_id, "upload", functools.partial(self._revert_once, ctx, image_id, reason), then
        )

    async def _revert_once(self, ctx: RequestContext, image_id: str, reason: str) -> bool:
        def revert(repos: Repositories) -> None:
            images = self._images(repos)
            repos.quotas.release(image_id)
            images.images.set_status(
                image_id, [ImageStatus.SAVING], ImageStatus.QUEUED, size=None, virtual_size=None
            )
            images.record(
                ctx,
                image_id,
                HistoryAction.UPLOAD,
                HistoryOutcome.FAILURE,
                status=ImageStatus.QUEUED,
                message=f"{reason} Nothing was kept; the image is queued again.",
            )

        try:
            await self.ports.run(revert)
        except (NotFound, Conflict):
            log.info("image %s left 'saving' before the failed upload could revert it", image_id)
            await release_reservation(self.ports, image_id)
            return False
        return True

    async def _discard(self, store: ImageStore, location: str) -> None:
        try:
            await store.delete(location)
        except StorageError:
            log.warning("could not remove %s from store %s; it is an orphan now", location, store.id)

    # -- download ----------------------------------------------------------------------------------
    async def download(
        self, ctx: RequestContext, image_id: str, byte_range: ByteRange | None
    ) -> Download | None:
        """The image's bytes (or a range of them); None when the image has no data yet."""

        def load(repos: Repositories) -> Image:
            image, _ = self._images(repos).load(ctx, image_id, "download_image")
            return image

        image = await self.ports.run(load, readonly=True)
        if image.status == ImageStatus.DEACTIVATED and not ctx.is_admin:
            raise Forbidden("The requested image has been deactivated. Image data download is prohibited.")
        if not image.locations or image.size is None:
            return None
        size = image.size
        first, last = byte_range.resolve(size) if byte_range else (0, size - 1)
        length = last - first + 1 if size else 0
        for location in image.locations:
            if location.store_id not in self.ports.stores.ids():
                continue
            store = self.ports.stores.get(location.store_id)
            try:
                stream = await store.open(location.url, first, length)
            except StoreNotFound:
                log.warning(
                    "image %s: data missing from store %s; trying the next location",
                    image_id,
                    location.store_id,
                )
                continue
            stream = counted(stream, metrics().bytes.labels(store.id, "downloaded").inc)
            if byte_range is None:
                return Download(image=image, stream=stream, length=length, total=size)
            return Download(image=image, stream=stream, length=length, total=size, first=first, last=last)
        raise NotFound(f"The data of image {image_id} could not be found in any of its stores.")

    # -- delete ------------------------------------------------------------------------------------
    async def delete_image(self, ctx: RequestContext, image_id: str) -> None:
        image = await self.ports.run(lambda repos: self._images(repos).delete(ctx, image_id))
        for location in image.locations:
            await self._remove_location_data(image_id, location)
        staging = self.ports.stores.staging
        with contextlib.suppress(StorageError):
            await staging.delete(staging.location_for(image_id))

    async def delete_from_store(self, ctx: RequestContext, image_id: str, store_id: str) -> None:
        if store_id not in self.ports.stores.ids():
            raise NotFound(f"Store '{store_id}' is not enabled at this site.")
        location = await self.ports.run(
            lambda repos: self._images(repos).remove_store(ctx, image_id, store_id)
        )
        await self._remove_location_data(image_id, location)

    async def _remove_location_data(self, image_id: str, location: Location) -> None:
        if location.store_id not in self.ports.stores.ids():
            log.warning(
                "image %s: store %s is no longer configured; its data stays", image_id, location.store_id
            )
            return
        try:
            await self.ports.stores.get(location.store_id).delete(location.url)
        except StoreNotFound:
            log.info("image %s: data already gone from store %s", image_id, location.store_id)
        except StorageError as exc:
            log.warning("image %s: could not delete data from store %s: %s", image_id, location.store_id, exc)


def _failure_text(exc: BaseException) -> str:
    """Why an upload stopped, for the image's history."""
    if isinstance(exc, GlimpseError):
        return exc.message
    if isinstance(exc, asyncio.CancelledError):
        return "The upload was interrupted (the client went away or the server stopped)."
    return f"The upload failed ({type(exc).__name__})."
