"""Interoperable import, the API half: staging data (glance-direct) and starting an import.

Starting an import checks the request in Glance's order (body, image, status, policy, lock, stores,
URL filtering), then creates the task row, takes the image's import lock, moves the image status and
records the target stores, all in one unit of work. A task runner picks the pending task up after
the commit. The lock is a compare-and-set on ``images.import_task_id``, so of any number of
concurrent requests, in any number of processes, exactly one wins.

Contract with the task runner (what a pending ``api_image_import`` task row holds):

* ``input = {"image_id": <id>, "import_req": ImportRequest.to_dict(), "backend": [<store>, ...]}``
  where ``backend`` lists the target stores in request order (configured order for ``all_stores``),
  without duplicates and without stores a copy-image already has.
* The image holds the lock (``import_task_id`` = the task id); its status is ``importing`` for
  glance-direct and web-download and unchanged (``active``) for copy-image.
* ``os_glance_importing_to_stores`` = the sorted, comma-joined ``backend``;
  ``os_glance_failed_import`` no longer names any of them (both exist, possibly ``""``).
* A task of type ``import`` (``POST /v2/tasks``, :meth:`ImportService.create_import_task`) is a
  web-download of an image created in the same unit of work; its input is Glance's
  (``import_from``, ``import_from_format``, ``image_properties``) plus ``backend``, and
  ``Task.import_request`` gives the runner the web-download request it stands for.
* glance-direct: the staged bytes are in ``ports.stores.staging`` under the key ``<image id>``,
  and the image's ``size`` says how many there are. When staging is a directory of each node and
  the nodes have names (``worker_self_reference_url``), ``PUT /stage`` records the node that holds
  the bytes in the hidden property ``os_glance_stage_host``; the import moves it into the task's
  ``stage_host``, and only that node's runners claim the task (the property is dropped, as in
  Glance). With staging on an object store no node is recorded: any runner reads the bytes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import anyio

from glimpse.context import RequestContext
from glimpse.domain import notifications as events
from glimpse.domain.history import HistoryAction, HistoryEntry, HistoryOutcome
from glimpse.domain.images import STAGE_HOST_PROPERTY, Image, ImageStatus
from glimpse.domain.import_plugins import ImportPlugin, detect_compression
from glimpse.domain.imports import ALL_STORES_CONFLICT, ExpectedDigest, ImportMethod, ImportRequest
from glimpse.domain.inspection import content_judge
from glimpse.domain.policy import PolicyRule
from glimpse.domain.quotas import NO_LIMITS, Limits, Resource
from glimpse.domain.tasks import (
    EXPIRED_LOCK_MESSAGE,
    ImportTaskRequest,
    Task,
    TaskStatus,
    TaskType,
    lock_breakable_at,
    lock_is_stale,
    waiting_message,
)
from glimpse.domain.url_rules import check_url
from glimpse.errors import (
    Conflict,
    DatabaseUnavailable,
    DigestMismatch,
    Forbidden,
    FormatMismatch,
    GlimpseError,
    ImageGone,
    ImageLocked,
    InvalidInput,
    NotFound,
    OverQuota,
    StorageError,
    StoreNotFound,
    TooLarge,
    UnsafeImage,
    UnsupportedMediaType,
)
from glimpse.ports import Ports, Repositories, TaskRepository
from glimpse.services.image_data import touching, undo_failed, upload_hasher
from glimpse.services.images import ImageService, owner_of
from glimpse.services.quotas import (
    Reservation,
    admit,
    limits_for,
    release_reservation,
    reserve_for_import,
)
from glimpse.streaming import ContentInspector, inspected, prefetch, rebuffer
from glimpse.telemetry import metrics

log = logging.getLogger(__name__)

IMPORTING_PROPERTY: Final = "os_glance_importing_to_stores"
FAILED_PROPERTY: Final = "os_glance_failed_import"
#: Task and user ids are kept in 64-character columns.
MAX_ID_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class ImportStarted:
    """What starting an import produced: the task, or None when a copy had nothing left to do."""

    task_id: str | None
    stores: tuple[str, ...] = ()
    #: The import method of the task created.
    method: str | None = None
    #: The stale task whose import lock this one took over, if any.
    took_over: str | None = None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _store_list(value: str | None) -> list[str]:
    return [item for item in (value or "").split(",") if item]


def _without(value: str | None, stores: Sequence[str]) -> str:
    return ",".join(item for item in _store_list(value) if item not in stores)


def describe_lock(
    ctx: RequestContext,
    image_id: str,
    holder_id: str,
    holder: Task | None,
    now: datetime,
    stale_after: timedelta,
) -> tuple[str, dict[str, object]]:
    """Who holds an image's lock, as one sentence pair for people and as fields for programs.

    The user and request ids of a task another project started are left out (admins see them).
    """
    tasks_url = f"/v2/images/{image_id}/tasks"
    if holder is None:
        lock: dict[str, object] = {
            "task_id": holder_id,
            "status": None,
            "user_id": None,
            "request_id": None,
            "seconds_since_heartbeat": None,
            "breakable_at": None,
            "tasks_url": tasks_url,
        }
        return f"task {holder_id} holds the import lock; watch it at {tasks_url}.", lock
    redacted = not ctx.is_admin and holder.owner != ctx.project_id
    last_sign_of_life = holder.heartbeat_at or holder.updated_at
    seconds = max(0, int((now - last_sign_of_life).total_seconds()))
    breakable = lock_breakable_at(holder, stale_after)
    breakable_text = _iso(breakable) if breakable is not None else _iso(now)
    if redacted:
        who = "another project's request"
    else:
        who = f"user {holder.user_id or 'unknown'} in request {holder.request_id or 'unknown'}"
    lock = {
        "task_id": holder.id,
        "status": str(holder.status),
        "user_id": None if redacted else holder.user_id,
        "request_id": None if redacted else holder.request_id,
        "seconds_since_heartbeat": seconds,
        "breakable_at": breakable_text,
        "tasks_url": tasks_url,
    }
    if holder.status == TaskStatus.PENDING:
        timing = (
            f"It was queued {seconds} seconds ago and has not started; the lock can be broken from "
            f"{breakable_text} if no runner picks it up before then."
        )
    else:
        timing = (
            f"Its last heartbeat was {seconds} seconds ago; the lock can be broken from "
            f"{breakable_text} if the task stays silent until then."
        )
    text = (
        f"task {holder.id} ({holder.status}), started by {who}, holds the import lock of image "
        f"{image_id}. {timing} Watch it at {tasks_url}."
    )
    return text, lock


@dataclass(frozen=True, slots=True)
class _Bust:
    """A stale lock the new import will take over: its holder's id and row (None when missing)."""

    holder_id: str
    holder: Task | None


class ImportService:
    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.settings = ports.settings

    @property
    def stale_after(self) -> timedelta:
        return timedelta(minutes=self.settings.import_lock_stale_after)

    def _images(self, repos: Repositories) -> ImageService:
        return ImageService(repos, self.settings, self.ports.policy, self.ports.clock)

    # -- PUT /v2/images/{id}/stage -----------------------------------------------------------------
    def check_stage_request(self, media_type: str | None) -> None:
        """Glance's first two checks of a stage request: the method is enabled (404), the body is
        octet-stream (415)."""
        if ImportMethod.GLANCE_DIRECT not in self.settings.enabled_import_methods:
            raise NotFound("'glance-direct' method is not available at this site.")
        if media_type != "application/octet-stream":
            raise UnsupportedMediaType(
                f"Staged data must be sent as application/octet-stream, not '{media_type or 'nothing'}'."
            )

    async def _inspected(
        self, blocks: AsyncIterator[bytes], inspector: ContentInspector[Any]
    ) -> AsyncIterator[bytes]:
        """The staged blocks, inspected; compressed data is not when the ``image_decompression``
        plugin will decompress it at import (the import inspects what it finds inside)."""
        first = await anext(blocks, b"")
        source = _chain(first, blocks)
        if not (
            ImportPlugin.IMAGE_DECOMPRESSION in self.settings.import_plugins and detect_compression(first)
        ):
            source = inspected(source, inspector)
        async for block in source:
            yield block

    async def stage(
        self,
        ctx: RequestContext,
        image_id: str,
        body: AsyncIterator[bytes],
        *,
        media_type: str | None,
        content_length: int | None,
        declared_size: int | None,
        expected: Sequence[ExpectedDigest] = (),
    ) -> int:
        """Stream the body into the staging store under the image id; returns the bytes staged.

        The data is inspected on the way (the content rules of :mod:`glimpse.domain.inspection`,
        against the image's disk_format when it is already set): a refused image is not staged.
        With ``expected`` (the ``Content-Digest``/``Repr-Digest`` headers) the data is hashed as an
        upload is (:func:`~glimpse.services.image_data.upload_hasher`), and data whose digest
        differs is not staged.

        The image moves ``queued → uploading`` first and back to ``queued`` (nothing staged) on any
        failure: client gone, too large, a size that does not match, a store error, cancellation.
        """
        self.check_stage_request(media_type)
        limit = self.settings.image_size_cap

        def check(repos: Repositories) -> tuple[str | None, str | None]:
            image, _ = self._images(repos).load(ctx, image_id, PolicyRule.MODIFY_IMAGE)
            if image.owner != ctx.project_id and not ctx.is_admin:
                raise Forbidden("Only the image owner can stage its data.")
            if image.status != ImageStatus.QUEUED:
                raise Conflict(
                    f"Image {image_id} is '{image.status}'; data can only be staged for a queued image."
                )
            return image.disk_format, image.owner

        disk_format, owner = await self.ports.run(check, readonly=True)
        for declared in (content_length, declared_size):
            if declared is not None and declared > limit:
                raise self._too_large(limit)
        staging = self.ports.stores.staging
        if await self._staged_size(image_id) is not None:
            raise Conflict(f"The image {image_id} has data on staging")

        limits = await limits_for(self.ports, owner)
        reservation = Reservation(self.ports, limits, owner, Resource.IMAGE_STAGE_TOTAL, image_id)
        announced = declared_size if content_length is None else content_length

        def begin(repos: Repositories) -> None:
            if owner is not None:
                admit(repos, limits, owner, Resource.IMAGE_COUNT_UPLOADING, self.ports.clock())
                if announced is not None and reservation.enforced:
                    reservation.grow(repos, announced, announced)
            self._images(repos).images.set_status(image_id, [ImageStatus.QUEUED], ImageStatus.UPLOADING)

        await self.ports.run(begin)
        inspector = ContentInspector(content_judge(disk_format, self.settings.content_rules))
        source = self._inspected(
            rebuffer(touching(self.ports, image_id, reservation.metered(body))), inspector
        )
        if expected:
            source = upload_hasher(self.settings.hashing_algorithm, None, expected).wrap(source)
        try:
            stored = await staging.write(image_id, prefetch(source), max_size=limit)
        except BaseException as exc:
            reason = exc.message if isinstance(exc, GlimpseError) else "The staging request stopped."
            await self._unstage(ctx, image_id, None, reason)
            if isinstance(exc, OverQuota):
                exc.message += " Nothing was staged and the image is still queued."
                log.info("image %s: staging refused: %s", image_id, exc.message)
                raise exc from None
            if isinstance(exc, TooLarge):
                raise self._too_large(limit) from None
            if isinstance(exc, FormatMismatch | UnsafeImage | DigestMismatch):
                exc.message += " Nothing was staged and the image is still queued."
                log.info("image %s: staging refused: %s", image_id, exc.message)
                raise exc from None
            raise
        for what, declared in (("Content-Length", content_length), ("x-openstack-image-size", declared_size)):
            if declared is not None and declared != stored.size:
                await self._unstage(
                    ctx,
                    image_id,
                    stored.location,
                    f"The body had {stored.size} bytes but {what} said {declared}.",
                )
                raise InvalidInput(
                    f"The request body had {stored.size} bytes but {what} said {declared}; "
                    "nothing was staged and the image is still queued."
                )

        stage_host = self.settings.stage_host

        def finish(repos: Repositories) -> None:
            service = self._images(repos)
            images = service.images
            images.set_status(image_id, [ImageStatus.UPLOADING], ImageStatus.UPLOADING, size=stored.size)
            repos.quotas.release(image_id)  # the staged size counts through the image now
            if stage_host is not None:
                images.set_property(image_id, STAGE_HOST_PROPERTY, stage_host)
            service.record(
                ctx, image_id, HistoryAction.STAGE, bytes_moved=stored.size, status=ImageStatus.UPLOADING
            )

        try:
            await self.ports.run(finish)
        except (NotFound, Conflict):
            await release_reservation(self.ports, image_id)
            await self._discard_staged(stored.location)
            raise ImageGone(
                f"Image {image_id} was deleted while its data was being staged; the data was discarded."
            ) from None
        except DatabaseUnavailable as exc:
            # Whether the size was recorded is unknown until the database answers again: the staged
            # data goes only once the image is known to be back in 'queued' without it.
            await self._unstage(
                ctx,
                image_id,
                stored.location,
                f"The database stopped answering: {exc.message}",
                recorded=None,
            )
            exc.message += (
                f" The staged data was not kept: image {image_id} goes back to 'queued' as soon as the "
                "database answers; stage it again then."
            )
            raise
        metrics().bytes.labels(staging.id, "staged").inc(stored.size)
        return stored.size

    async def _staged_size(self, image_id: str) -> int | None:
        try:
            staging = self.ports.stores.staging
            return (await staging.stat(staging.location_for(image_id))).size
        except StoreNotFound:
            return None

    async def _discard_staged(self, location: str) -> None:
        try:
            await self.ports.stores.staging.delete(location)
        except StorageError:
            log.warning("could not remove staged data %s; it is an orphan now", location)

    async def _unstage(
        self,
        ctx: RequestContext,
        image_id: str,
        location: str | None,
        reason: str,
        *,
        recorded: bool | None = False,
    ) -> None:
        """Put the image back to ``queued`` and remove what was staged (if anything), even when the
        request is being cancelled; when the database does not answer, as soon as it does
        (:func:`~glimpse.services.image_data.undo_failed`). ``recorded``: whether the stage's size
        was recorded; None when unknown (its commit failed), and then the data goes only once the
        image is known to be queued without it."""

        async def revert() -> bool:
            def change(repos: Repositories) -> None:
                if recorded is None and repos.images.get(image_id).size is not None:
                    raise Conflict(f"Image {image_id} was staged after all.")
                repos.quotas.release(image_id)
                service = self._images(repos)
                service.images.set_status(
                    image_id, [ImageStatus.UPLOADING], ImageStatus.QUEUED, size=None, virtual_size=None
                )
                service.record(
                    ctx,
                    image_id,
                    HistoryAction.STAGE,
                    HistoryOutcome.FAILURE,
                    status=ImageStatus.QUEUED,
                    message=f"{reason} Nothing was staged; the image is queued again.",
                )

            try:
                await self.ports.run(change)
            except (NotFound, Conflict):
                log.info("image %s left 'uploading' before the failed staging could revert it", image_id)
                await release_reservation(self.ports, image_id)
                return False
            return True

        async def discard() -> None:
            if location is not None and recorded is None:
                await self._discard_staged(location)

        with anyio.CancelScope(shield=True):
            if location is not None and recorded is not None:
                await self._discard_staged(location)
            await undo_failed(self.ports, image_id, "stage", revert, discard)

    @staticmethod
    def _too_large(limit: int) -> TooLarge:
        return TooLarge(
            f"Image data is larger than the {limit} bytes image_size_cap allows; nothing was staged "
            "and the image is still queued."
        )

    # -- POST /v2/images/{id}/import ---------------------------------------------------------------
    async def start_import(
        self,
        ctx: RequestContext,
        image_id: str,
        body: object,
        *,
        store_header: str | None = None,
        auth_token: str | None = None,
    ) -> ImportStarted:
        """Validate the request, create the task and take the lock (one unit of work), then wake the
        runner. ``task_id`` is None when a copy to all stores found every store already done.

        ``auth_token`` is the caller's validated Keystone token: a glance-download task keeps it
        while it is active (``Task.credential``), to read the catalog and the remote image."""
        await self._check_staged_data_reachable(ctx, image_id, body)
        limits = await limits_for(self.ports, await self._owner(ctx, image_id))
        try:
            started = await self.ports.run(
                lambda repos: self.begin_import(
                    repos, ctx, image_id, body, store_header, auth_token=auth_token, limits=limits
                )
            )
        except OverQuota as exc:
            exc.message += " No import was started and the image is unchanged."
            log.info("image %s: import refused: %s", image_id, exc.message)
            raise
        if started.task_id is not None:
            counters = metrics()
            counters.tasks_created.labels(str(TaskType.API_IMAGE_IMPORT), started.method or "-").inc()
            if started.took_over is not None:
                counters.lock_busts.inc()
            self.ports.wake_runner()
            self.ports.notify_task_change(image_id)
        return started

    async def _owner(self, ctx: RequestContext, image_id: str) -> str | None:
        """The owner of the image (whose quotas an import counts against); None when the caller
        cannot see it: begin_import then answers 404/403 in Glance's order."""

        def look(repos: Repositories) -> str | None:
            try:
                return self._images(repos).load(ctx, image_id)[0].owner
            except (NotFound, Forbidden):
                return None

        return await self.ports.run(look, readonly=True)

    async def _check_staged_data_reachable(self, ctx: RequestContext, image_id: str, body: object) -> None:
        """glance-direct with staging local to each node and no ``os_glance_stage_host`` recorded:
        the data must be in this node's staging area, or no runner will ever find it (409)."""
        staging = self.settings.staging
        if not staging.node_local:
            return
        try:
            request = ImportRequest.from_dict(body, self.settings.enabled_import_methods)
        except InvalidInput:
            return  # begin_import answers with the precise 400
        if request.method is not ImportMethod.GLANCE_DIRECT:
            return

        def look(repos: Repositories) -> Image | None:
            try:
                image, _ = self._images(repos).load(ctx, image_id)
            except (NotFound, Forbidden):
                return None  # begin_import answers 404/403 in Glance's order
            return image

        image = await self.ports.run(look, readonly=True)
        if image is None or image.status != ImageStatus.UPLOADING:
            return
        if image.properties.get(STAGE_HOST_PROPERTY) or await self._staged_size(image_id) is not None:
            return
        raise Conflict(
            f"Image {image_id} is staged, but its data is not in the staging area of the node that "
            "received this import, and no node recorded holding it (os_glance_stage_host). With a "
            "staging directory on each node (node_staging_uri), the import must reach the node that "
            "staged the data: set worker_self_reference_url on every node, or put staging on an object "
            "store ([os_glance_staging_store] type), so that any node can accept it. Until then, send "
            "the import to the node that staged the data, or delete the image."
        )

    def begin_import(
        self,
        repos: Repositories,
        ctx: RequestContext,
        image_id: str,
        body: object,
        store_header: str | None,
        *,
        import_task: ImportTaskRequest | None = None,
        auth_token: str | None = None,
        limits: Limits = NO_LIMITS,
    ) -> ImportStarted:
        """Check the request, add the pending task and take the lock. With ``import_task`` (a
        ``POST /v2/tasks`` body) ``body`` is its web-download request and the task is of type
        ``import``, keeping that task's input. ``limits`` are the image owner's quotas, checked
        (and what is known reserved for the task) as :func:`reserve_for_import` says."""
        request = ImportRequest.from_dict(body, self.settings.enabled_import_methods)
        images = self._images(repos)
        image, target = images.load(ctx, image_id)
        tasks = repos.tasks
        now = self.ports.clock()
        # Retrying the stores an import failed to write, once the image is active (the import
        # succeeded in the other stores): a copy of the image's data to those stores, which the
        # image's owner may ask for as it asked for the import.
        owner_retry = (
            request.retry_failed and request.method.brings_data and image.status == ImageStatus.ACTIVE
        )
        if owner_retry:
            request = replace(
                request,
                method=ImportMethod.COPY_IMAGE,
                uri=None,
                validation_data=None,
                glance_image_id=None,
                glance_region=None,
                glance_service_interface=None,
            )
        credential = self._download_credential(request, auth_token)
        try:
            _check_status(image, request.method)
        except Conflict as exc:
            # Usually the status is what an earlier import made it: say which task holds the image.
            if image.import_task_id is None:
                raise
            holder = tasks.find(image.import_task_id)
            text, lock = describe_lock(ctx, image.id, image.import_task_id, holder, now, self.stale_after)
            raise ImageLocked(f"{exc.message}; {text}", lock) from None
        if request.method is ImportMethod.COPY_IMAGE and not owner_retry:
            images.policy.enforce(PolicyRule.COPY_IMAGE, ctx, target)
        else:
            images.policy.enforce(PolicyRule.MODIFY_IMAGE, ctx, target)
            if image.owner != ctx.project_id and not ctx.is_admin:
                raise Forbidden("Only the image owner can import data into it.")
        holder_id = image.import_task_id
        bust = None if holder_id is None else self._check_lock(ctx, tasks, image.id, holder_id, now)
        stores = self._target_stores(request, image, store_header)
        if not stores:
            return ImportStarted(task_id=None)
        if request.uri is not None:
            self._check_uri(request.uri)
        for what, value in (("X-User-Id", ctx.user_id), ("request id", ctx.request_id)):
            if value is not None and len(value) > MAX_ID_LENGTH:
                raise InvalidInput(f"An import needs a {what} of at most {MAX_ID_LENGTH} characters.")

        stage_host = None
        if request.method is ImportMethod.GLANCE_DIRECT:
            stage_host = image.properties.get(STAGE_HOST_PROPERTY) or None
        if import_task is None:
            task_type = TaskType.API_IMAGE_IMPORT
            task_input = {"image_id": image.id, "import_req": request.to_dict(), "backend": list(stores)}
        else:
            task_type, task_input = TaskType.IMPORT, import_task.task_input(stores)
        task_id = str(uuid.uuid4())
        if limits.enforced:
            reserve_for_import(
                repos,
                limits,
                image,
                request.method,
                len(stores),
                task_id,
                now=now,
                expires_at=now + timedelta(seconds=self.settings.reservation_timeout),
            )
        task = Task(
            id=task_id,
            type=task_type,
            status=TaskStatus.PENDING,
            owner=ctx.project_id,
            image_id=image.id,
            request_id=ctx.request_id,
            user_id=ctx.user_id,
            input=task_input,
            created_at=now,
            updated_at=now,
            message=waiting_message(stage_host),
            stage_host=stage_host,
            credential=credential,
            roles=(
                (*ctx.roles, *ctx.service_roles) if request.method is ImportMethod.GLANCE_DOWNLOAD else ()
            ),
        )
        tasks.add(task)
        if bust is not None and bust.holder is not None:
            ttl = timedelta(hours=self.settings.task_time_to_live)
            holder = bust.holder
            silent_since = holder.heartbeat_at or holder.updated_at
            if tasks.fail(bust.holder_id, now, ttl, EXPIRED_LOCK_MESSAGE, silent_since=silent_since):
                # The holder as failed (its image is this one): for its history entry, and for the
                # notification when anyone wants it.
                busted = replace(holder, image_id=image.id)
                repos.history.add(
                    HistoryEntry.of_task(busted, now, HistoryOutcome.FAILURE, message=EXPIRED_LOCK_MESSAGE)
                )
                if images.outbox.wants(events.TASK_FAILURE) and (failed := tasks.find(bust.holder_id)):
                    images.outbox.add(events.task_event(events.TASK_FAILURE, failed))
            else:
                # Not failed: it beat again since it was read (it still holds the lock), or it ended
                # meanwhile. The guarded update is the one judge of that; a second read judged by
                # this request's clock could disagree with it, so the request is refused (409) and
                # a retry starts from what is there then.
                raise self._lost_race(ctx, repos, image.id, now)
        replacing = None if bust is None else bust.holder_id
        if not images.images.take_lock(image.id, task.id, replacing=replacing):
            raise self._lost_race(ctx, repos, image.id, now)
        if bust is not None:
            log.warning(
                "image %s: task %s took over the import lock of stale task %s",
                image.id,
                task.id,
                bust.holder_id,
            )
        status = image.status
        if request.method is ImportMethod.GLANCE_DIRECT:
            images.images.set_status(image.id, [ImageStatus.UPLOADING], ImageStatus.IMPORTING)
            status = ImageStatus.IMPORTING
        elif request.method in (ImportMethod.WEB_DOWNLOAD, ImportMethod.GLANCE_DOWNLOAD):
            images.images.set_status(image.id, [ImageStatus.QUEUED], ImageStatus.IMPORTING)
            status = ImageStatus.IMPORTING
        # Re-read under the lock just taken: a change committed since the first read is not undone.
        image = images.images.get(image.id)
        stale = bust.holder.stores if bust is not None and bust.holder is not None else []
        properties = image.properties
        properties[FAILED_PROPERTY] = _without(properties.get(FAILED_PROPERTY), [*stale, *stores])
        properties[IMPORTING_PROPERTY] = ",".join(sorted(stores))
        properties.pop(STAGE_HOST_PROPERTY, None)  # the task holds it now (Glance drops it here too)
        images.images.save(image, expected_status=status)
        repos.history.add(
            HistoryEntry.of_task(
                task,
                now,
                HistoryOutcome.ACCEPTED,
                status=status,
                message=f"{request.method} to {', '.join(stores)}",
            )
        )
        images.announce(ctx, events.TASK_CREATE, events.task_payload(task))
        images.announce(ctx, events.IMAGE_PREPARE, events.import_payload(image))
        return ImportStarted(task_id=task.id, stores=stores, method=str(request.method), took_over=replacing)

    # -- POST /v2/tasks (type import) ----------------------------------------------------------------
    def authorize_task_creation(self, ctx: RequestContext) -> None:
        """``tasks_api_access`` (administrators by default), then ``add_task``: 403 otherwise."""
        self.ports.policy.enforce(PolicyRule.TASKS_API_ACCESS, ctx, {})
        self.ports.policy.enforce(PolicyRule.ADD_TASK, ctx, {})

    async def create_import_task(self, ctx: RequestContext, body: object) -> Task:
        """Glance's old ``import`` task: create an image with the given properties and run a
        web-download of ``import_from`` into it, all in one unit of work (a refused request leaves
        no image behind). The task runs on the task runners like any import."""
        self.authorize_task_creation(ctx)
        import_task = ImportTaskRequest.from_body(body)
        if ImportMethod.WEB_DOWNLOAD not in self.settings.enabled_import_methods:
            raise InvalidInput(
                "Tasks of type 'import' download their data as the web-download import method does, "
                "and web-download is not enabled at this site (enabled_import_methods)."
            )
        request = import_task.import_request()
        if request.uri is not None:
            self._check_uri(request.uri)  # before an image exists, so that nothing is undone

        limits = await limits_for(self.ports, owner_of(ctx, import_task.image_properties))

        def unit(repos: Repositories) -> Task:
            image = self._images(repos).create(ctx, import_task.image_properties, limits)
            started = self.begin_import(
                repos, ctx, image.id, request.to_dict(), None, import_task=import_task, limits=limits
            )
            assert started.task_id is not None  # a web-download always has a target store
            return repos.tasks.get(started.task_id, self.ports.clock())

        task = await self.ports.run(unit)
        self.ports.wake_runner()
        if task.image_id is not None:
            self.ports.notify_task_change(task.image_id)
        return task

    def _check_lock(
        self, ctx: RequestContext, tasks: TaskRepository, image_id: str, holder_id: str, now: datetime
    ) -> _Bust:
        """409 while the holder is alive; otherwise the stale lock this import will take over."""
        holder = tasks.find(holder_id)
        if holder is not None and not lock_is_stale(holder, now, self.stale_after):
            text, lock = describe_lock(ctx, image_id, holder_id, holder, now, self.stale_after)
            raise ImageLocked(f"Image has active task: {text}", lock)
        return _Bust(holder_id=holder_id, holder=holder)

    def _lost_race(self, ctx: RequestContext, repos: Repositories, image_id: str, now: datetime) -> Conflict:
        """Another request took the lock between our check and our compare-and-set."""
        prefix = (
            f"New operation on image '{image_id}' is not permitted as prior operation is still in progress"
        )
        current = self._images(repos).images.get(image_id)  # NotFound when it was deleted meanwhile
        if current.import_task_id is None:
            return Conflict(f"{prefix}; try again.")
        holder = repos.tasks.find(current.import_task_id)
        text, lock = describe_lock(ctx, image_id, current.import_task_id, holder, now, self.stale_after)
        return ImageLocked(f"{prefix}: {text}", lock)

    def _target_stores(
        self, request: ImportRequest, image: Image, store_header: str | None
    ) -> tuple[str, ...]:
        """The stores to import to, checked against the configured ones (Glance's rules and messages)."""
        registry = self.ports.stores
        if request.retry_failed:
            if store_header is not None:
                raise InvalidInput(
                    '"stores": "failed" and the x-image-meta-store header cannot be used together.'
                )
            return self._failed_stores(image, request.method)
        if request.all_stores:
            if store_header is not None:
                raise InvalidInput(ALL_STORES_CONFLICT)
            wanted: list[str] = list(registry.ids())
        elif request.stores is not None:
            if store_header is not None:
                raise InvalidInput("Stores parameter and x-image-meta-store header can't be both specified")
            wanted = list(dict.fromkeys(request.stores))
        else:
            wanted = [store_header if store_header is not None else registry.default.id]
        for store_id in wanted:
            registry.get(store_id)  # UnknownStore: 409, as in Glance
        if request.method is ImportMethod.COPY_IMAGE:
            if request.all_stores:
                wanted = [store_id for store_id in wanted if store_id not in image.stores]
            else:
                for location in image.locations:
                    if location.store_id in wanted:
                        raise InvalidInput(f"Image is already present at store '{location.store_id}'")
        return tuple(wanted)

    def _failed_stores(self, image: Image, method: ImportMethod) -> tuple[str, ...]:
        """``"stores": "failed"``: exactly the stores of ``os_glance_failed_import`` (in its order),
        each still configured and, for a copy, not holding the image already; 409 when none."""
        failed = _store_list(image.properties.get(FAILED_PROPERTY))
        if method is ImportMethod.COPY_IMAGE:
            failed = [store_id for store_id in failed if store_id not in image.stores]
        if not failed:
            raise Conflict(
                f"Image {image.id} has no failed stores to retry (os_glance_failed_import is empty); "
                "name the stores to import to with 'stores', or use 'all_stores'."
            )
        for store_id in failed:
            self.ports.stores.get(store_id)  # UnknownStore (409) for a store no longer configured
        return tuple(failed)

    def _download_credential(self, request: ImportRequest, auth_token: str | None) -> str | None:
        """The token a glance-download task keeps (400 when there is none to keep); None for the
        other methods."""
        if request.method is not ImportMethod.GLANCE_DOWNLOAD:
            return None
        if self.settings.auth_strategy != "keystone":
            raise InvalidInput(
                "glance-download is not available at this site: it finds the other region's image "
                "service in the Keystone service catalog of the caller's token, and this site does not "
                "validate tokens (auth_strategy = noauth). Use web-download with the image's URL instead, "
                "or run this site with auth_strategy = keystone."
            )
        if not auth_token:
            raise InvalidInput("glance-download needs the caller's Keystone token in X-Auth-Token.")
        return auth_token

    def _check_uri(self, uri: str) -> None:
        check_url(uri, self.settings.import_filter)


def _check_status(image: Image, method: ImportMethod) -> None:
    """The image status (and formats) each method needs: 409 with Glance's messages."""
    if image.status == ImageStatus.ACTIVE and method is not ImportMethod.COPY_IMAGE:
        raise Conflict("Image with status active cannot be target for import")
    if image.status != ImageStatus.ACTIVE and method is ImportMethod.COPY_IMAGE:
        raise Conflict("Only images with status active can be targeted for copying")
    if image.status != ImageStatus.QUEUED and method in (
        ImportMethod.WEB_DOWNLOAD,
        ImportMethod.GLANCE_DOWNLOAD,
    ):
        raise Conflict(f"Image needs to be in 'queued' state to use '{method}' method")
    if image.status != ImageStatus.UPLOADING and method is ImportMethod.GLANCE_DIRECT:
        raise Conflict("Image needs to be staged before 'glance-direct' method can be used")
    for attr in ("container_format", "disk_format"):
        if not getattr(image, attr):
            raise Conflict(f"'{attr}' needs to be set before import")


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for block in rest:
        yield block
