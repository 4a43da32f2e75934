"""The steps of the import flows: Begin, Download, CopyToStores and Complete.

Each has ``execute`` and ``revert`` (see :mod:`glimpse.jobs.steps`); what a revert undoes for each
reason is documented in ``docs/tasks.md`` ("Task runner").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta

from glimpse.context import RequestContext
from glimpse.domain import notifications as events
from glimpse.domain.history import HistoryOutcome
from glimpse.domain.images import BASE_ATTRIBUTES, Image, ImageStatus, Location
from glimpse.domain.imports import ImportMethod
from glimpse.domain.inspection import ContentVerdict, content_judge
from glimpse.domain.property_protections import PropertyOperation
from glimpse.domain.quotas import Limits, Resource
from glimpse.domain.tasks import (
    StoreState,
    TaskCancelled,
    TaskLost,
    TaskProgress,
    TaskType,
    copied_message,
)
from glimpse.domain.url_rules import shown_uri
from glimpse.errors import (
    Conflict,
    DatabaseUnavailable,
    DownloadFailed,
    FlowFailed,
    FormatMismatch,
    InvalidInput,
    NotFound,
    OverQuota,
    StorageError,
    StoreNotFound,
    TooLarge,
    UnsafeImage,
)
from glimpse.jobs.fanout import Outcome, StoreWriteFailed, Target, describe_error, fan_out
from glimpse.jobs.glance_source import (
    RemoteImage,
    data_url,
    fetch_remote_image,
    find_image_endpoint,
    token_headers,
)
from glimpse.jobs.image_state import check_holder, record_task_end, update_store_lists
from glimpse.jobs.import_run import (
    PHASE_DONE,
    PHASE_PENDING,
    PHASE_STAGING,
    PHASE_STORES,
    ImportRun,
)
from glimpse.jobs.objects import delete_object, remove_unreferenced
from glimpse.jobs.steps import Why
from glimpse.jobs.web_source import WebSource
from glimpse.ports import Repositories, reserve_quota, verify_write
from glimpse.streaming import ContentInspector, StreamHasher, prefetch
from glimpse.telemetry import metrics

log = logging.getLogger(__name__)


class Begin:
    """Check the task and the image, set up the progress, and (on revert) restore the image."""

    name = "begin"

    async def execute(self, run: ImportRun) -> None:
        task = run.task
        if task.type not in (TaskType.API_IMAGE_IMPORT, TaskType.IMPORT):
            raise FlowFailed(f"Tasks of type '{task.type}' are not run by Glimpse; use api_image_import.")
        if not run.image_id:
            raise FlowFailed("The task input names no image_id, so there is nothing to import.")
        if run.request is None:
            if task.type == TaskType.IMPORT:
                raise FlowFailed("The input of this import task holds no 'import_from' URL.")
            raise FlowFailed(
                "The task input holds no valid import request ('import_req' with one of the methods "
                f"{', '.join(ImportMethod)})."
            )
        if not run.targets:
            raise FlowFailed("The task input names no target store (the 'backend' list is empty).")
        unknown = [s for s in run.targets if s not in run.ports.stores]
        if unknown:
            raise FlowFailed(
                f"Store(s) {', '.join(unknown)} are not configured at this site any more; "
                f"the stores are {', '.join(run.ports.stores.ids())}."
            )

        def load(repos: Repositories) -> Image:
            check_holder(repos, run.image_id, task.id)
            return repos.images.get(run.image_id)

        image = await run.ports.run(load, readonly=True)
        expected = ImageStatus.IMPORTING if run.brings_data else ImageStatus.ACTIVE
        if image.status != expected:
            raise FlowFailed(
                f"Image {image.id} is '{image.status}', but {run.method} runs on '{expected}' images."
            )
        run.image = image
        run.size = image.size
        run.disk_format = image.disk_format
        for store_id in run.targets:
            run.heartbeat.store(store_id).bytes_total = image.size
        if run.brings_data:
            for plugin in run.ports.settings.import_plugins:
                run.progress.plugins.setdefault(plugin, "pending")
        run.heartbeat.start_phase(PHASE_PENDING)
        await run.heartbeat.beat(force=True)

    async def revert(self, run: ImportRun, reason: Why) -> None:
        if run.request is None or not run.targets or reason == Why.LOST:
            return
        importing = run.brings_data

        def restore(repos: Repositories) -> bool:
            if reason == Why.INTERRUPTED:
                # Exactly as the import request left it, so that the task can simply run again.
                update_store_lists(repos, run.image_id, importing=run.targets, not_failed=run.targets)
                return False
            update_store_lists(repos, run.image_id, failed=run.targets)
            images = repos.images
            if not importing or images.get(run.image_id).status != ImageStatus.IMPORTING:
                return False
            images.set_status(
                run.image_id, [ImageStatus.IMPORTING], ImageStatus.QUEUED, size=None, virtual_size=None
            )
            return True

        queued = await run.locked(restore)
        if queued:
            # Back in 'queued', the image has no data: the staged copy goes too (a new stage or
            # web-download starts from a clean slate).
            await delete_object(run.staging, run.staging.location_for(run.image_id))


class Download:
    """web-download: stream the URL into the staging area, heart-beating as bytes arrive."""

    name = "download"

    async def execute(self, run: ImportRun) -> None:
        uri = None if run.request is None else run.request.uri
        if not uri:
            raise FlowFailed("The web-download request has no method.uri, so there is nothing to download.")
        hb = run.heartbeat
        hb.start_phase(PHASE_STAGING)
        await hb.beat(force=True)
        try:
            await _stage_from(run, uri)
        except (InvalidInput, DownloadFailed, TooLarge) as exc:
            raise FlowFailed(f"web-download of {shown_uri(uri)} failed: {exc.message}") from None

    async def revert(self, run: ImportRun, reason: Why) -> None:
        if run.staged is None:
            return  # a write that did not complete leaves nothing: the store discards it
        if reason == Why.LOST and not await run.image_is_gone():
            return  # the task that failed us owns the clean-up of the image's staging data
        await delete_object(run.staging, run.staged)
        run.staged = None


async def _stage_from(run: ImportRun, url: str, headers: Mapping[str, str] | None = None) -> None:
    """Stream ``url`` into the staging area (filtered at every hop, capped at the data limit),
    heart-beating as bytes arrive; sets ``run.staged`` and ``run.size``."""
    limit = await run.data_limit(staging=True)
    settings = run.ports.settings
    source = WebSource(
        settings.import_filter,
        max_size=limit,
        timeout=settings.web_download_read_timeout,
        connect_timeout=settings.web_download_connect_timeout,
        retries=settings.web_download_retries,
    )
    hb = run.heartbeat
    fetched = metrics().bytes.labels(run.staging.id, "fetched").inc

    async def counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            hb.progress.staged_bytes += len(chunk)
            fetched(len(chunk))
            yield chunk
            await hb.beat()
        await hb.beat(force=True)  # the last check before the staged object is committed

    async def fetch() -> int:
        async with source.stream(url, headers) as download:
            hb.progress.staged_total = download.size
            chunks = counted(await _reserved_for_staging(run, download.chunks, download.size))
            stored = await run.staging.write(run.image_id, chunks, max_size=limit)
            run.staged = stored.location
            return stored.size

    try:
        run.size = await hb.guard(fetch())
    except OverQuota as exc:
        raise FlowFailed(f"{exc.message} Nothing was kept in the staging area.") from None
    except TooLarge as exc:
        if limit < settings.image_size_cap:
            exc.message += (
                f" The {limit} bytes are what the owner's quota leaves (image_size_total, "
                "image_stage_total; image_size_cap is higher): delete images the project no longer "
                "needs, or ask an administrator for a higher limit."
            )
        raise
    except StorageError as exc:
        if isinstance(exc, DatabaseUnavailable):
            raise
        raise FlowFailed(f"Writing the downloaded data to the staging area failed: {exc.message}") from None
    for store_id in run.targets:
        hb.store(store_id).bytes_total = run.size


def _task_reserves(
    run: ImportRun,
    repos: Repositories,
    limits: Limits,
    owner: str,
    resource: Resource,
    needed: int,
    wanted: int,
    now: datetime,
) -> int | None:
    """Inside a unit of work, at ``now``: grow the task's reservation of ``resource`` by ``needed``
    (up to ``wanted``), held by the task until ``reservation_timeout`` (its heartbeats renew it);
    the new total, None when the owner has no such limit."""
    life = timedelta(seconds=run.ports.settings.reservation_timeout)
    return reserve_quota(
        repos,
        limits,
        owner,
        resource,
        run.task.id,
        needed=needed,
        wanted=wanted,
        now=now,
        expires_at=now + life,
    )


async def _reserved_for_staging(
    run: ImportRun, chunks: AsyncIterator[bytes], size: int | None
) -> AsyncIterator[bytes]:
    """``chunks``, each passed to the staging area only once the owner's ``image_stage_total``
    reservation covers it: the announced ``size`` at once, or ``[quota] reservation_step`` at a
    time as a download of unknown size arrives. The task holds it (its heartbeats renew it; its
    last status drops it, when its staged data is gone), so parallel downloads can never stage
    more than the limit together. A step that does not fit raises :class:`OverQuota` before its
    bytes are written."""
    image = run.image
    owner = image.owner if image is not None else None
    limits = await run.ports.limits.limits(owner) if owner is not None else None
    if owner is None or limits is None or limits.limit(Resource.IMAGE_STAGE_TOTAL) is None:
        return chunks
    ports = run.ports
    step = ports.settings.reservation_step

    async def metered() -> AsyncIterator[bytes]:
        covered = passed = 0
        async for chunk in chunks:
            if passed + len(chunk) > covered:
                needed = passed + len(chunk) - covered
                wanted = max(needed, step if size is None else size - covered)

                def grow(repos: Repositories, needed: int = needed, wanted: int = wanted) -> int | None:
                    return _task_reserves(
                        run, repos, limits, owner, Resource.IMAGE_STAGE_TOTAL, needed, wanted, ports.clock()
                    )

                total = await ports.run(grow)
                covered = passed + len(chunk) if total is None else total
            passed += len(chunk)
            yield chunk

    return metered()


class GlanceDownload(Download):
    """glance-download: find the other region's image service in the caller's catalog, check the
    remote image is active, take its formats and the configured properties, and stream its data
    into the staging area as web-download does (the same filter, cap and heartbeats)."""

    name = "glance-download"

    async def execute(self, run: ImportRun) -> None:
        request = run.request
        if request is None or not request.glance_image_id or not request.glance_region:
            raise FlowFailed("The glance-download request names no glance_image_id and glance_region.")
        remote_id, region = request.glance_image_id, request.glance_region
        interface = request.glance_service_interface or "public"
        hb = run.heartbeat
        hb.start_phase(PHASE_STAGING)
        await hb.beat(force=True)
        settings = run.ports.settings
        token = run.task.credential
        what = f"glance-download of image {remote_id} from region '{region}' failed"
        if token is None:
            raise FlowFailed(
                f"{what}: the task no longer holds the token of the import request (it is kept only "
                "while the task is active); import again."
            )
        if settings.identity_url is None:
            raise FlowFailed(
                f"{what}: this site has no identity service configured ([keystone_authtoken] auth_url) "
                "to read the service catalog from."
            )
        try:
            endpoint = await hb.guard(find_image_endpoint(settings.identity_url, token, region, interface))
            remote = await hb.guard(
                fetch_remote_image(settings.import_filter, endpoint, remote_id, token, region)
            )
            if remote.status != "active":
                raise FlowFailed(
                    f"{what}: the remote image is '{remote.status}', and only an active image can be "
                    "downloaded; import again once it is active."
                )
            await self._take_metadata(run, remote)
            await _stage_from(run, data_url(endpoint, remote_id), token_headers(token))
        except (InvalidInput, DownloadFailed, TooLarge) as exc:
            raise FlowFailed(f"{what}: {exc.message}") from None
        if remote.size is not None and run.size != remote.size:
            raise FlowFailed(
                f"{what}: {run.size} bytes arrived, but the remote image has {remote.size}; import again."
            )
        run.remote_digest = remote.os_hash

    @staticmethod
    async def _take_metadata(run: ImportRun, remote: RemoteImage) -> None:
        """The remote image's disk and container formats and the ``extra_properties`` it has, on
        the image; what they replace is kept for the revert."""
        settings = run.ports.settings
        formats = {
            "disk_format": remote.text("disk_format"),
            "container_format": remote.text("container_format"),
        }
        allowed = {"disk_format": settings.disk_formats, "container_format": settings.container_formats}
        for name, value in formats.items():
            if value is None or value not in allowed[name]:
                raise FlowFailed(
                    f"The remote image's {name} is {value!r}, which this site does not accept "
                    f"({', '.join(allowed[name])}); nothing was imported."
                )
        copied = remote.properties(settings.download_properties, BASE_ATTRIBUTES)

        # The properties are set with the importing user's rights, as a PATCH of theirs would be:
        # one the property protections do not let them create (or change) fails the import.
        caller = RequestContext(user_id=run.task.user_id, project_id=run.task.owner, roles=run.task.roles)
        policy = run.ports.policy

        def apply(repos: Repositories) -> Image:
            image = repos.images.get(run.image_id)
            for name in sorted(copied):
                operation = PropertyOperation.UPDATE if name in image.properties else PropertyOperation.CREATE
                if not policy.property_allowed(caller, name, operation):
                    raise FlowFailed(
                        f"The remote image's property '{name}' is one [glance_download_properties] "
                        f"extra_properties copies, but the property protections "
                        f"(property_protection_file) do not let the importing user {operation} it; "
                        "nothing was imported. Import as a user whose roles may, or leave the "
                        "property out of extra_properties."
                    )
            run.metadata_undo = {
                "disk_format": image.disk_format,
                "container_format": image.container_format,
                "properties": {name: image.properties.get(name) for name in copied},
            }
            image.disk_format = formats["disk_format"]
            image.container_format = formats["container_format"]
            image.properties.update(copied)
            repos.images.save(image, expected_status=ImageStatus.IMPORTING)
            return repos.images.get(run.image_id)

        run.image = await run.locked(apply)
        run.disk_format = run.image.disk_format

    async def revert(self, run: ImportRun, reason: Why) -> None:
        await super().revert(run, reason)
        undo = run.metadata_undo
        if undo is None or reason in (Why.LOST,):
            return

        def restore(repos: Repositories) -> None:
            image = repos.images.get(run.image_id)
            image.disk_format = undo["disk_format"]
            image.container_format = undo["container_format"]
            for name, value in undo["properties"].items():
                if value is None:
                    image.properties.pop(name, None)
                else:
                    image.properties[name] = value
            repos.images.save(image)

        await run.locked(restore)
        run.metadata_undo = None


async def _reserve_for_stores(run: ImportRun, image: Image, stores: int) -> None:
    """Before any store gets a byte: the data, once per target store, reserved against the owner's
    ``image_size_total`` and held by the task (what ``POST /import`` reserved already counts; the
    task's end drops what is left). A limit that does not hold it fails the task with Glance's
    ``image_size_total is over limit`` and no store is written."""
    owner = image.owner
    size = run.size if run.size is not None else image.size
    if owner is None or size is None or stores == 0:
        return
    limits = await run.ports.limits.limits(owner)
    if limits.limit(Resource.IMAGE_SIZE_TOTAL) is None:
        return

    def reserve(repos: Repositories) -> None:
        # One instant for what the task holds and for what it adds: a reservation of its own that
        # expired between two readings of the clock would be counted by one and not the other.
        now = run.ports.clock()
        needed = size * stores - repos.quotas.held(Resource.IMAGE_SIZE_TOTAL, run.task.id, now)
        if needed > 0:
            _task_reserves(run, repos, limits, owner, Resource.IMAGE_SIZE_TOTAL, needed, needed, now)

    try:
        await run.locked(reserve)
    except OverQuota as exc:
        raise FlowFailed(f"{exc.message} Nothing was written to the target stores.") from None


class CopyToStores:
    """Read the data once and write it to every target store at the same time."""

    name = "copy"

    async def execute(self, run: ImportRun) -> None:
        image = run.image
        if image is None:  # pragma: no cover - Begin always sets it
            raise FlowFailed("The image was not loaded.")
        targets = await self._targets(run, image)
        await _reserve_for_stores(run, image, len(targets))
        hasher = self._hasher(run, image)
        stream, source = await self._open(run, image)
        hb = run.heartbeat
        hb.start_phase(PHASE_STORES)
        await hb.beat(force=True)
        expected = run.size

        async def on_block(final: bool) -> None:
            if not final:
                await hb.beat()
                return
            if expected is not None and hasher.size != expected:
                raise FlowFailed(
                    f"The data read from {source} has {hasher.size} bytes, "
                    f"but the image's size is {expected}."
                )
            if run.method is ImportMethod.COPY_IMAGE:
                self._verify(image, hasher, source)
            self._check_expected(run, hasher, source)
            await hb.beat(force=True)

        outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        copy = asyncio.ensure_future(
            hb.guard(
                fan_out(
                    prefetch(hasher.wrap(stream)),
                    targets,
                    clock=run.ports.clock,
                    on_block=on_block,
                    outcomes=outcomes,
                    stop_on_failure=run.must_succeed,
                    verify=lambda store, stored: verify_write(
                        store, stored, size=hasher.size, md5=hasher.checksum
                    ),
                )
            )
        )
        try:
            await self._record_as_they_finish(run, copy, outcomes)
            copy.result()
        except (FormatMismatch, UnsafeImage) as exc:
            what = "copied" if run.method is ImportMethod.COPY_IMAGE else "imported"
            raise FlowFailed(
                f"The image data read from {source} was refused, so it was not {what}: {exc.message}"
            ) from None
        except StoreWriteFailed as exc:
            raise FlowFailed(
                f"The import to store '{exc.outcome.store_id}' failed ({describe_error(exc.outcome.error)}) "
                "and all_stores_must_succeed is true, so no store kept the data (import with "
                "all_stores_must_succeed=false to keep the stores that work)."
            ) from None
        except StorageError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise FlowFailed(f"Reading the image data from {source} failed: {exc.message}") from None
        finally:
            await _close(stream)
        if not run.recorded:
            details = "; ".join(f"{s}: {why}" for s, why in sorted(run.failed.items()))
            raise FlowFailed(f"No target store accepted the image data ({details}).")
        run.size = hasher.size
        verdict = hasher.inspector.verdict if hasher.inspector else None
        if isinstance(verdict, ContentVerdict):
            run.virtual_size = verdict.virtual_size
            for warning in verdict.warnings:
                log.warning("image %s: a safety check failed but is not fatal: %s", run.image_id, warning)
        run.checksum, run.os_hash_algo, run.os_hash_value = (
            hasher.checksum,
            hasher.algorithm,
            hasher.multihash,
        )

    async def _targets(self, run: ImportRun, image: Image) -> list[Target]:
        present = set(image.stores)
        direction = "copied" if run.method is ImportMethod.COPY_IMAGE else "imported"
        targets: list[Target] = []
        for store_id in run.targets:
            progress = run.heartbeat.store(store_id)
            if store_id in present:
                # Already holds the data (a copy-image asked for a store it is in): nothing to do.
                progress.state = StoreState.DONE
                progress.bytes_done = progress.bytes_total or 0
                await run.locked(_finished_store(run.image_id, store_id))
                continue
            targets.append(
                Target(
                    store=run.ports.stores.get(store_id),
                    key=run.image_id,
                    progress=progress,
                    max_size=run.size,
                    on_bytes=metrics().bytes.labels(store_id, direction).inc,
                )
            )
        if not targets:
            raise FlowFailed(f"Image {run.image_id} is already in every target store.")
        return targets

    @staticmethod
    def _hasher(run: ImportRun, image: Image) -> StreamHasher:
        """Hashes, and the inspection of the content (a copy re-checks the image it copies)."""
        settings = run.ports.settings
        algorithm = settings.hashing_algorithm
        if run.method is ImportMethod.COPY_IMAGE and image.os_hash_algo in hashlib.algorithms_available:
            algorithm = image.os_hash_algo or algorithm
        disk_format = run.disk_format or image.disk_format
        inspector = ContentInspector(content_judge(disk_format, settings.content_rules))
        expected = run.expected_digest
        return StreamHasher(algorithm, inspector, also=expected.algorithm if expected else None)

    @staticmethod
    def _check_expected(run: ImportRun, hasher: StreamHasher, source: str) -> None:
        """The digest the client gave (``validation_data``), checked before any store keeps the data."""
        expected = run.expected_digest
        if expected is None:
            return
        actual = hasher.digest(expected.algorithm)
        if actual != expected.value and expected is run.remote_digest:
            raise FlowFailed(
                f"The data read from {source} has {expected.algorithm} {actual}, but the remote image "
                f"records {expected.value}; the download was damaged and nothing was stored. Import again."
            )
        if actual != expected.value:
            raise FlowFailed(
                f"The data read from {source} has {expected.algorithm} {actual}, but validation_data "
                f"expects {expected.value}; nothing was stored. Check the digest (or the URL) and "
                "import again."
            )

    @staticmethod
    def _verify(image: Image, hasher: StreamHasher, source: str) -> None:
        """A copy must carry exactly the image's bytes: compare what was read with the recorded hashes."""
        mismatch = (image.checksum is not None and hasher.checksum != image.checksum) or (
            image.os_hash_value is not None
            and image.os_hash_algo == hasher.algorithm
            and hasher.multihash != image.os_hash_value
        )
        if mismatch:
            raise FlowFailed(
                f"The data read from {source} does not match the image's checksum, so it was not "
                "copied; that copy of the image may be damaged and an operator should check it."
            )

    @staticmethod
    async def _open(run: ImportRun, image: Image) -> tuple[AsyncIterator[bytes], str]:
        if run.brings_data:
            staging = run.staging
            staged = run.staged_source
            try:
                if run.size is None:
                    run.size = (await staging.stat(staged)).size
                stream = await staging.open(staged)
            except StoreNotFound:
                raise FlowFailed(
                    f"The staging area holds no data for image {run.image_id}, so there is nothing to import."
                ) from None
            return stream, "the staging area"
        if run.request is not None and run.request.retry_failed:
            kept = await CopyToStores._kept_staging(run, image)
            if kept is not None:
                return kept, "the staging area (the data the import left there)"
        default = run.ports.stores.default.id
        candidates = sorted(image.locations, key=lambda location: location.store_id != default)
        for location in candidates:
            if location.store_id not in run.ports.stores:
                continue
            try:
                stream = await run.ports.stores.get(location.store_id).open(location.url)
            except StorageError as exc:
                log.warning(
                    "image %s: cannot read from store %s (%s); trying the next",
                    run.image_id,
                    location.store_id,
                    exc.message,
                )
                continue
            return stream, f"store '{location.store_id}'"
        raise FlowFailed(
            f"None of the stores holding image {run.image_id} could be read, so it cannot be copied."
        )

    @staticmethod
    async def _kept_staging(run: ImportRun, image: Image) -> AsyncIterator[bytes] | None:
        """A retry of the stores an import failed to write reads the data that import left in the
        staging area, while it is there and has the image's size (the copy still checks every byte
        against the image's checksums); None otherwise (the copy reads a store)."""
        staging = run.staging
        location = staging.location_for(run.image_id)
        try:
            if (await staging.stat(location)).size != image.size:
                return None
            stream = await staging.open(location)
        except StorageError:
            return None
        run.reused_staging = True
        return stream

    async def _record_as_they_finish(
        self, run: ImportRun, copy: asyncio.Future[list[Outcome]], outcomes: asyncio.Queue[Outcome]
    ) -> None:
        """Record each store's outcome in the database as soon as it is known (in this task, where
        no heartbeat cancellation can interrupt a commit half-way)."""
        try:
            while not (copy.done() and outcomes.empty()):
                if outcomes.empty():
                    getter = asyncio.ensure_future(outcomes.get())
                    await asyncio.wait((copy, getter), return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        await asyncio.gather(getter, return_exceptions=True)
                        continue
                    outcome = getter.result()
                else:
                    outcome = outcomes.get_nowait()
                if copy.done() and (copy.cancelled() or copy.exception() is not None):
                    # The copy as a whole failed: its objects are only tracked, to be reverted.
                    if outcome.stored is not None:
                        run.written[outcome.store_id] = outcome.stored.location
                    continue
                await self._record(run, outcome)
        except BaseException:
            if not copy.done():
                copy.cancel()
            await asyncio.gather(copy, return_exceptions=True)
            while not outcomes.empty():
                outcome = outcomes.get_nowait()
                if outcome.stored is not None:
                    run.written[outcome.store_id] = outcome.stored.location
            raise

    @staticmethod
    async def _record(run: ImportRun, outcome: Outcome) -> None:
        store_id = outcome.store_id
        if outcome.stored is not None:
            location = outcome.stored.location
            run.written[store_id] = location

            def done(repos: Repositories) -> None:
                repos.images.add_location(
                    run.image_id, Location(store_id=store_id, url=location, metadata={"store": store_id})
                )
                update_store_lists(repos, run.image_id, finished=[store_id])
                # The store's copy counts through its location now (at the image's size, once the
                # image has one: a download's is set when the image becomes active), not through
                # the reservation.
                counted = repos.images.get(run.image_id).size
                if counted is not None:
                    repos.quotas.give_back(run.task.id, Resource.IMAGE_SIZE_TOTAL, counted)
                if repos.outbox.wants(events.IMAGE_UPLOAD):
                    payload = events.import_payload(repos.images.get(run.image_id))
                    repos.outbox.add(events.Event(events.IMAGE_UPLOAD, payload, run.context.to_dict()))

            await run.locked(done)
            run.recorded.append(store_id)
            log.info("task %s: image %s is now in store %s", run.task.id, run.image_id, store_id)
            return
        reason = describe_error(outcome.error)
        run.failed[store_id] = reason
        log.warning("task %s: store %s failed: %s", run.task.id, store_id, reason)
        if run.must_succeed:
            return  # the whole flow fails and is reverted; the revert records the failed stores
        await run.locked(lambda s: update_store_lists(s, run.image_id, failed=[store_id]))

    async def revert(self, run: ImportRun, reason: Why) -> None:
        if reason == Why.LOST:
            await remove_unreferenced(run.ports, run.image_id, run.written, task_id=run.task.id)
            return
        recorded = list(run.recorded)

        def unrecord(repos: Repositories) -> None:
            repo = repos.images
            for store_id in recorded:
                with contextlib.suppress(NotFound):
                    repo.remove_location(run.image_id, store_id)

        await run.locked(unrecord)
        run.recorded.clear()
        for store_id, location in list(run.written.items()):
            await delete_object(run.ports.stores.get(store_id), location)
            del run.written[store_id]


class Complete:
    """Activate the image (imports), mark the task successful and release the lock, atomically."""

    name = "complete"

    async def execute(self, run: ImportRun) -> None:
        hb = run.heartbeat
        hb.progress.end(PHASE_DONE)
        progress = TaskProgress.from_dict(hb.progress.to_dict())
        image = run.image
        now = run.ports.clock()
        ttl = timedelta(hours=run.ports.settings.task_time_to_live)

        def complete(repos: Repositories) -> None:
            images = repos.images
            if run.brings_data and image is not None:
                try:
                    images.set_status(
                        run.image_id,
                        [ImageStatus.IMPORTING],
                        ImageStatus.ACTIVE,
                        size=run.size,
                        virtual_size=run.virtual_size,
                        checksum=run.checksum,
                        os_hash_algo=run.os_hash_algo,
                        os_hash_value=run.os_hash_value,
                        disk_format=run.disk_format or image.disk_format,
                    )
                except Conflict as exc:
                    raise FlowFailed(f"The image could not be activated: {exc.message}") from None
            tasks = repos.tasks
            result = {"image_id": run.image_id}
            if not tasks.succeed(
                run.task.id, run.worker_id, now, ttl, result, progress, copied_message(progress)
            ):
                # Nothing of this unit of work is kept: a cancel that came after the last heartbeat
                # still wins (the steps undo the run), and so does whoever took the task over.
                current = tasks.find(run.task.id)
                if current is not None and current.cancel is not None and current.claimed_by == run.worker_id:
                    raise TaskCancelled(run.task.id, current.cancel)
                raise TaskLost(run.task.id)
            images.release_lock(run.image_id, run.task.id)
            record_task_end(repos, run.task, now, HistoryOutcome.SUCCESS, _end_text(run, progress), progress)
            context = run.context.to_dict()
            if run.brings_data and image is not None and repos.outbox.wants(events.IMAGE_ACTIVATE):
                payload = events.import_payload(images.get(run.image_id))
                repos.outbox.add(events.Event(events.IMAGE_ACTIVATE, payload, context))
            done = tasks.find(run.task.id) if repos.outbox.wants(events.TASK_SUCCESS) else None
            if done is not None:
                repos.outbox.add(
                    events.Event(events.TASK_SUCCESS, events.task_payload(done, run.failed), context)
                )

        await run.locked(complete)
        if not (run.brings_data or run.reused_staging):
            return
        if run.failed and not run.derived:
            # Some stores failed (all_stores_must_succeed = false): the staged data stays for a
            # retry of those stores ("stores": "failed") until the staging sweep removes it.
            log.info(
                "task %s: stores %s failed; the staged data of image %s is kept for a retry",
                run.task.id,
                ",".join(sorted(run.failed)),
                run.image_id,
            )
            return
        await delete_object(run.staging, run.staged or run.staging.location_for(run.image_id))
        for location in run.derived:
            await delete_object(run.staging, location)
        run.derived.clear()

    async def revert(self, run: ImportRun, reason: Why) -> None:
        return  # one transaction: it either happened entirely or not at all


def _end_text(run: ImportRun, progress: TaskProgress) -> str:
    """How a successful task ended, for the image's history: what it copied, and the stores that
    failed when others succeeded (all_stores_must_succeed = false)."""
    text = f"{copied_message(progress)} to {', '.join(s for s in run.targets if s not in run.failed) or '-'}."
    if run.failed:
        text += f" Failed: {', '.join(f'{s} ({why})' for s, why in sorted(run.failed.items()))}."
    return text


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close a source stream now rather than whenever it is garbage-collected (it holds a file)."""
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


def _finished_store(image_id: str, store_id: str) -> Callable[[Repositories], None]:
    def finish(repos: Repositories) -> None:
        update_store_lists(repos, image_id, finished=[store_id])

    return finish
