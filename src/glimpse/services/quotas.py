"""Project quotas, exact under concurrency: count checks and size reservations.

A check runs inside the unit of work that makes the change it allows, after taking the project's
quota row (:meth:`~glimpse.ports.QuotaRepository.lock_project`): a new image is counted against
``image_count_total`` in the transaction that inserts it, an upload or stage against
``image_count_uploading`` in the one that moves the image to ``saving``/``uploading``.

Data is reserved before it is written (:class:`Reservation`): the bytes announced by
``Content-Length``, or ``[quota] reservation_step`` at a time while data of unknown size arrives.
A chunk that would take the project past its limit is never passed to the store: the write fails
with :class:`~glimpse.errors.OverQuota` (413) and the caller removes what it wrote. The reservation
is dropped in the unit of work that makes the image's size count (or reverts the image), and a
reservation whose process died expires after ``[quota] reservation_timeout`` seconds without renewal
(the upload renews it while it lives; the housekeeping deletes expired ones).

An import counts when ``POST /import`` creates its task (:func:`reserve_for_import`): what is known
then is reserved, held by the task (renewed by its heartbeats, dropped with its last status); the
runner's store step reserves a downloaded image's size the same way (``ports.reserve_quota``, the
one reservation rule both layers use). :func:`release_reservation` gives back what a write that
did not happen reserved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import anyio

from glimpse.domain.images import Image
from glimpse.domain.imports import ImportMethod
from glimpse.domain.quotas import NO_LIMITS, Limits, Resource, refusal
from glimpse.errors import OverQuota
from glimpse.ports import Ports, Repositories, reserve_quota


async def limits_for(ports: Ports, project: str | None) -> Limits:
    """``project``'s limits (none for an image without an owner)."""
    return NO_LIMITS if not project else await ports.limits.limits(project)


async def usage_of(ports: Ports, project: str | None, resource: Resource) -> int:
    """``project``'s usage of ``resource`` (bytes or a count), live reservations included."""
    if not project:
        return 0
    now = ports.clock()
    return await ports.run(lambda repos: repos.quotas.usage(project, resource, now), readonly=True)


async def usage_report(ports: Ports, project: str | None) -> dict[str, dict[str, int]]:
    """``GET /v2/info/usage`` with unified limits: each of the four resources with its limit and
    usage in Keystone's units (MiB for sizes, rounded down; -1: unlimited). Usage includes the
    reservations of data being written."""
    limits = await limits_for(ports, project)
    now = ports.clock()

    def count(repos: Repositories) -> dict[Resource, int]:
        return {r: repos.quotas.usage(project, r, now) if project else 0 for r in Resource}

    used = await ports.run(count, readonly=True)
    report: dict[str, dict[str, int]] = {}
    for resource in Resource:
        limit = limits.limit(resource)
        report[resource.value] = {
            "limit": -1 if limit is None else resource.in_keystone_units(limit),
            "usage": resource.in_keystone_units(used[resource]),
        }
    return report


async def release_reservation(ports: Ports, holder: str) -> None:
    """Drop every quota reservation ``holder`` (an image being written, or an import task) has, in a
    unit of work of its own, even while the caller is being cancelled: the one way to give back
    what a write that did not happen had reserved (the reservation would otherwise count until it
    expires). Inside a unit of work that makes the data count, call ``repos.quotas.release`` there
    instead, so that the usage never drops between the two."""
    with anyio.CancelScope(shield=True):
        await ports.run(lambda repos: repos.quotas.release(holder))


def admit(repos: Repositories, limits: Limits, project: str, resource: Resource, now: datetime) -> None:
    """Allow one more of a counted ``resource`` for ``project``, or raise :class:`OverQuota`.

    The project's row stays locked until the unit of work ends: the caller adds the image (or
    changes its status) in the same unit, so no other check can count before it is there."""
    limit = limits.limit(resource)
    if limit is None:
        return
    repos.quotas.lock_project(project, now)
    usage = repos.quotas.usage(project, resource, now)
    if usage + 1 > limit:
        raise OverQuota(resource.value, refusal(resource, project, limit, usage, 1))


def reserve_for_import(
    repos: Repositories,
    limits: Limits,
    image: Image,
    method: ImportMethod,
    stores: int,
    holder: str,
    *,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Inside the unit of work that creates import task ``holder`` for ``image`` to ``stores`` new
    stores: check the owner's quotas as Glance does for the method, and reserve what is known now,
    held by the task until it ends (:meth:`~glimpse.ports.TaskRepository` drops it with the task's
    last status). Raises :class:`OverQuota` (413) and nothing is created.

    * glance-direct: the staged data, once per target store, against ``image_size_total``.
    * copy-image: the image's size once per new store against ``image_size_total``, and one
      ``image_count_uploading`` (the image stays ``active``, so its status does not count it).
    * web-download, glance-download: one ``image_count_uploading`` (the image becomes ``importing``
      in this unit of work) and room left in ``image_stage_total`` and ``image_size_total``; the size
      is not known before the download, whose data limit is what the two leave.
    """
    project = image.owner
    if not project or not limits.enforced:
        return

    def hold(resource: Resource, amount: int) -> None:
        if amount <= 0 or limits.limit(resource) is None:
            return
        reserve_quota(
            repos,
            limits,
            project,
            resource,
            holder,
            needed=amount,
            wanted=amount,
            now=now,
            expires_at=expires_at,
        )

    if method is ImportMethod.GLANCE_DIRECT:
        hold(Resource.IMAGE_SIZE_TOTAL, (image.size or 0) * stores)
    elif method is ImportMethod.COPY_IMAGE:
        hold(Resource.IMAGE_SIZE_TOTAL, (image.size or 0) * stores)
        hold(Resource.IMAGE_COUNT_UPLOADING, 1)
    else:
        admit(repos, limits, project, Resource.IMAGE_COUNT_UPLOADING, now)
        for resource in (Resource.IMAGE_STAGE_TOTAL, Resource.IMAGE_SIZE_TOTAL):
            limit = limits.limit(resource)
            if limit is None:
                continue
            repos.quotas.lock_project(project, now)
            usage = repos.quotas.usage(project, resource, now)
            if usage >= limit:
                raise OverQuota(resource.value, refusal(resource, project, limit, usage, 1))


class Reservation:
    """The bytes one write of ``holder``'s data may still pass to a store, grown as they arrive."""

    def __init__(
        self, ports: Ports, limits: Limits, project: str | None, resource: Resource, holder: str
    ) -> None:
        self.ports = ports
        self.limits = limits if project is not None else NO_LIMITS
        self.project = project or ""
        self.resource = resource
        self.holder = holder
        #: Bytes reserved so far (None: unlimited) and bytes passed on.
        self.total: int | None = 0 if self.limits.limit(resource) is not None else None
        self.passed = 0

    @property
    def enforced(self) -> bool:
        return self.total is not None

    def expires_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.ports.settings.reservation_timeout)

    def grow(self, repos: Repositories, needed: int, wanted: int) -> None:
        """Inside a unit of work: reserve ``needed`` more bytes (up to ``wanted``)."""
        now = self.ports.clock()
        total = reserve_quota(
            repos,
            self.limits,
            self.project,
            self.resource,
            self.holder,
            needed=needed,
            wanted=wanted,
            now=now,
            expires_at=self.expires_at(now),
        )
        self.total = total

    def release(self, repos: Repositories) -> None:
        """Inside the unit of work that makes the data count (or gives up on it)."""
        if self.enforced:
            repos.quotas.release(self.holder, self.resource)

    async def metered(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``chunks``, each passed on only once the reservation covers it."""
        step = self.ports.settings.reservation_step
        async for chunk in chunks:
            if self.total is not None and self.passed + len(chunk) > self.total:
                needed = self.passed + len(chunk) - self.total

                def grow(repos: Repositories, needed: int = needed) -> None:
                    self.grow(repos, needed, max(needed, step))

                await self.ports.run(grow)
            self.passed += len(chunk)
            yield chunk
