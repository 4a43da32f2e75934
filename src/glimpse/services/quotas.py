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
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import anyio

from glimpse.domain.quotas import NO_LIMITS, Limits, Resource, refusal
from glimpse.errors import OverQuota
from glimpse.ports import Ports, Repositories


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


def reserve(
    repos: Repositories,
    limits: Limits,
    project: str,
    resource: Resource,
    holder: str,
    *,
    needed: int,
    wanted: int,
    now: datetime,
    expires_at: datetime,
) -> int | None:
    """Grow ``holder``'s reservation of ``resource`` by at least ``needed`` bytes and at most
    ``wanted``, as far as the limit allows; returns the reservation's new total (None: unlimited,
    nothing reserved). Raises :class:`OverQuota` when not even ``needed`` fits."""
    limit = limits.limit(resource)
    if limit is None:
        return None
    quotas = repos.quotas
    quotas.lock_project(project, now)
    usage = quotas.usage(project, resource, now)
    held = quotas.held(resource, holder, now)
    available = limit - usage
    if available < needed:
        raise OverQuota(resource.value, refusal(resource, project, limit, usage, needed))
    total = held + min(max(wanted, needed), available)
    quotas.hold(project, resource, holder, total, now, expires_at)
    return total


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
        total = reserve(
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
