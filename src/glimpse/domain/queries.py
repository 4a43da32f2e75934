"""What a caller may ask of an image listing: filters, sorting and paging, as plain data."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from glimpse.domain.images import ImageStatus, MemberStatus, Visibility


class Op(enum.StrEnum):
    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"


#: Base columns a listing can be filtered on, with the operators each accepts.
FILTERABLE: dict[str, frozenset[Op]] = {
    "id": frozenset({Op.EQ, Op.IN}),
    "name": frozenset({Op.EQ, Op.IN}),
    "status": frozenset({Op.EQ, Op.IN}),
    "owner": frozenset({Op.EQ, Op.IN}),
    "container_format": frozenset({Op.EQ, Op.IN}),
    "disk_format": frozenset({Op.EQ, Op.IN}),
    "checksum": frozenset({Op.EQ, Op.IN}),
    "os_hash_value": frozenset({Op.EQ, Op.IN}),
    "protected": frozenset({Op.EQ}),
    "min_ram": frozenset({Op.EQ}),
    "min_disk": frozenset({Op.EQ}),
    "size": frozenset(Op),
    "virtual_size": frozenset(Op),
    "created_at": frozenset(Op) - {Op.IN},
    "updated_at": frozenset(Op) - {Op.IN},
}
SORTABLE = frozenset(
    {
        "name",
        "status",
        "container_format",
        "disk_format",
        "size",
        "virtual_size",
        "id",
        "created_at",
        "updated_at",
        "owner",
        "visibility",
        "min_ram",
        "min_disk",
        "protected",
        "os_hidden",
    }
)
DEFAULT_SORT: tuple[tuple[str, str], ...] = (("created_at", "desc"),)

FilterValue = str | int | bool | datetime | ImageStatus


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    op: Op
    values: tuple[FilterValue, ...]


@dataclass(slots=True)
class ImageListQuery:
    filters: list[Filter] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    visibility: Visibility | None = None
    include_all_visibilities: bool = False
    member_status: MemberStatus | None = MemberStatus.ACCEPTED
    os_hidden: bool | None = False
    sort: tuple[tuple[str, str], ...] = DEFAULT_SORT
    limit: int = 25
    marker: str | None = None
