"""Project quotas: the four resources of Keystone's unified limits for images, a project's limits,
and the words of a refusal.

Sizes are bytes here; Keystone keeps the two size limits in MiB (:func:`from_keystone`). A resource
without a limit is unlimited. How usage is counted, and how a reservation makes a check exact under
concurrency, is the database's part (``glimpse.db.quota_repository``); what to check when, the
services' (``glimpse.services.quotas``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

MIB: Final = 1024 * 1024


class Resource(enum.StrEnum):
    """The resource names Glance registers in Keystone (``[DEFAULT] use_keystone_limits``)."""

    #: Bytes the project's images hold in stores (each location counts), MiB at Keystone.
    IMAGE_SIZE_TOTAL = "image_size_total"
    #: Bytes of the project's data in the staging area (staged, not yet imported), MiB at Keystone.
    IMAGE_STAGE_TOTAL = "image_stage_total"
    #: The project's images, whatever their status.
    IMAGE_COUNT_TOTAL = "image_count_total"
    #: The project's images whose data is coming in: ``saving``, ``uploading`` or ``importing``.
    IMAGE_COUNT_UPLOADING = "image_count_uploading"

    @property
    def is_size(self) -> bool:
        return self in (Resource.IMAGE_SIZE_TOTAL, Resource.IMAGE_STAGE_TOTAL)

    def in_keystone_units(self, amount: int) -> int:
        """``amount`` as Keystone states this resource: whole MiB for sizes, else the count."""
        return amount // MIB if self.is_size else amount

    def shown(self, amount: int) -> str:
        """An amount of this resource for a message: MiB (and bytes) for sizes, a count otherwise."""
        if not self.is_size:
            return str(amount)
        if amount % MIB == 0:
            return f"{amount // MIB} MiB"
        return f"{amount / MIB:.2f} MiB ({amount} bytes)"


#: The statuses whose images count towards ``image_count_uploading``.
UPLOADING_STATUSES: Final = ("saving", "uploading", "importing")
#: The statuses whose images' data sits in the staging area (``image_stage_total``).
STAGED_STATUSES: Final = ("uploading", "importing")


@dataclass(frozen=True, slots=True)
class Limits:
    """One project's limits: resource → the most it may have (bytes or a count). A resource not in
    ``values`` is unlimited. ``source`` says where they came from, for messages."""

    values: Mapping[Resource, int] = field(default_factory=dict)
    source: str = "configuration"

    def limit(self, resource: Resource) -> int | None:
        return self.values.get(resource)

    @property
    def enforced(self) -> bool:
        return bool(self.values)


NO_LIMITS: Final = Limits()


def from_keystone(limits: Mapping[str, int]) -> Limits:
    """The limits Keystone gives (resource name → limit, sizes in MiB), for the four resources.
    Keystone's -1 means unlimited; a resource with neither a registered limit nor a project limit
    has a limit of 0, as with oslo.limit (register all four). Names Glimpse does not know are ignored."""
    values: dict[Resource, int] = {}
    for resource in Resource:
        limit = limits.get(resource.value, 0)
        if limit < 0:
            continue
        values[resource] = limit * MIB if resource.is_size else limit
    return Limits(values, source="Keystone unified limits")


def refusal(resource: Resource, project: str, limit: int, usage: int, delta: int) -> str:
    """Why a request was refused, Glance's words first (``<resource> is over limit``), then the
    numbers and what to do."""
    return (
        f"{resource.value} is over limit for project {project}: the limit is {resource.shown(limit)}, "
        f"{resource.shown(usage)} is in use or reserved and this request needs {resource.shown(delta)} "
        "more. Delete images the project no longer needs, or ask an administrator for a higher limit."
    )
