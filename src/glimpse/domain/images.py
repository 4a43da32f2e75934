"""Images: the entity, its status machine, and the rules about which attributes a user may touch."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from glimpse.errors import InvalidInput, InvalidTransition, ReservedAttribute


class ImageStatus(enum.StrEnum):
    QUEUED = "queued"
    SAVING = "saving"
    UPLOADING = "uploading"
    IMPORTING = "importing"
    ACTIVE = "active"
    KILLED = "killed"
    DELETED = "deleted"
    PENDING_DELETE = "pending_delete"
    DEACTIVATED = "deactivated"


S = ImageStatus

#: The disk and container formats Glance accepts by default (``disk_formats``, ``container_formats``).
DEFAULT_DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
DEFAULT_CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")

#: Allowed status changes: the whole image status machine, as data.
TRANSITIONS: Mapping[ImageStatus, frozenset[ImageStatus]] = {
    S.QUEUED: frozenset({S.SAVING, S.UPLOADING, S.IMPORTING, S.ACTIVE, S.DELETED}),
    S.SAVING: frozenset({S.ACTIVE, S.KILLED, S.DELETED, S.QUEUED}),
    S.UPLOADING: frozenset({S.IMPORTING, S.QUEUED, S.DELETED}),
    # importing → uploading: a cancelled glance-direct import keeps its staged data.
    S.IMPORTING: frozenset({S.ACTIVE, S.DELETED, S.QUEUED, S.UPLOADING}),
    S.ACTIVE: frozenset({S.PENDING_DELETE, S.DELETED, S.DEACTIVATED}),
    S.KILLED: frozenset({S.DELETED}),
    # pending_delete → active: the scrubber's --restore, before the data is gone.
    S.PENDING_DELETE: frozenset({S.DELETED, S.ACTIVE}),
    S.DEACTIVATED: frozenset({S.ACTIVE, S.DELETED}),
    S.DELETED: frozenset(),
}

#: Leaving one of these for one of those needs disk_format and container_format set.
_NEEDS_FORMATS_FROM = frozenset({S.QUEUED, S.UPLOADING})
_NEEDS_FORMATS_TO = frozenset({S.SAVING, S.ACTIVE, S.IMPORTING})


class Visibility(enum.StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    SHARED = "shared"
    COMMUNITY = "community"


class MemberStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


#: Image attributes stored in the image's own row (besides id and the timestamps), in column order.
STORED_ATTRIBUTES: tuple[str, ...] = (
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "container_format",
    "disk_format",
    "min_ram",
    "min_disk",
)
#: Attributes that are columns of the image, as opposed to free-form string properties.
BASE_ATTRIBUTES = frozenset(
    {
        *STORED_ATTRIBUTES,
        "id",
        "created_at",
        "updated_at",
        "tags",
        "locations",
        "direct_url",
        "self",
        "file",
        "schema",
        "stores",
    }
)
#: Base attributes the service computes; a user can neither set nor change them.
READONLY_ATTRIBUTES = frozenset(
    {
        "status",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        "direct_url",
        "self",
        "file",
        "schema",
        "stores",
    }
)
#: Names no user may create or change, whatever their value.
RESERVED_ATTRIBUTES = frozenset({"deleted", "deleted_at", "location"})
RESERVED_PREFIX = "os_glance"
#: The node whose own staging area holds an image's staged data (Glance's name; its value is that
#: node's ``worker_self_reference_url``). Set by ``PUT /stage``, dropped when the import starts.
STAGE_HOST_PROPERTY = "os_glance_stage_host"
#: Properties the service maintains and that are never shown in responses.
HIDDEN_PROPERTIES = frozenset({STAGE_HOST_PROPERTY})
#: Updatable base attributes and the Python type each accepts.
MUTABLE_BASE_TYPES: Mapping[str, tuple[type, ...]] = {
    "name": (str, type(None)),
    "visibility": (str,),
    "protected": (bool,),
    "os_hidden": (bool,),
    "owner": (str, type(None)),
    "container_format": (str, type(None)),
    "disk_format": (str, type(None)),
    "min_ram": (int,),
    "min_disk": (int,),
}
MAX_STRING = 255
#: min_ram and min_disk are INTEGER columns: 32 bits on PostgreSQL.
MAX_INT32 = 2**31 - 1
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def is_uuid(value: str) -> bool:
    return _UUID_RE.fullmatch(value) is not None


def check_text(what: str, value: str) -> str:
    """Refuse text no database can store: PostgreSQL rejects the NUL character in every text column."""
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain the NUL character (U+0000).")
    return value


def normalize_uuid(value: str) -> str:
    if not is_uuid(value):
        raise InvalidInput(
            f"'{value}' is not a valid UUID; image ids look like '3fa85f64-5717-4562-b3fc-2c963f66afa6'."
        )
    return str(uuid.UUID(value))


def check_property_name(name: str, *, creating: bool) -> None:
    """Refuse names a user may not write: reserved ones and read-only base attributes."""
    if name.startswith(RESERVED_PREFIX) or name in RESERVED_ATTRIBUTES:
        raise ReservedAttribute(f"Attribute '{name}' is reserved.")
    if name in READONLY_ATTRIBUTES:
        raise ReservedAttribute(f"Attribute '{name}' is read-only.")
    if name == "id" and not creating:
        raise ReservedAttribute("Attribute 'id' is read-only.")
    if not name or len(name) > MAX_STRING:
        raise InvalidInput(f"Property names must be 1 to {MAX_STRING} characters long.")
    check_text(f"Property name {name!r}", name)


@dataclass(slots=True)
class Location:
    store_id: str
    url: str
    metadata: dict[str, str] = field(default_factory=dict)
    status: str = "active"


@dataclass(slots=True)
class Image:
    id: str
    owner: str | None
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    status: ImageStatus = ImageStatus.QUEUED
    visibility: Visibility = Visibility.SHARED
    protected: bool = False
    os_hidden: bool = False
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    size: int | None = None
    virtual_size: int | None = None
    container_format: str | None = None
    disk_format: str | None = None
    min_ram: int = 0
    min_disk: int = 0
    tags: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    locations: list[Location] = field(default_factory=list)
    #: The task holding the import lock (Glance's ``os_glance_import_task``), if any.
    import_task_id: str | None = None

    def check_transition(self, target: ImageStatus) -> None:
        """Raise InvalidTransition unless the status machine allows ``self.status`` → ``target``."""
        check_transition(self, self.status, target)

    @property
    def stores(self) -> list[str]:
        seen: list[str] = []
        for location in self.locations:
            if location.store_id not in seen:
                seen.append(location.store_id)
        return seen


def in_store_order(locations: Sequence[Location], configured: Sequence[str]) -> list[Location]:
    """The locations in the configured order of their stores (``enabled_backends``), those of
    stores no longer configured last, in the order they were added.

    An image's ``stores`` and ``direct_url`` come from this order, so they do not depend on which
    of several parallel copies happened to finish first.
    """
    rank = {store_id: index for index, store_id in enumerate(configured)}
    return sorted(locations, key=lambda location: rank.get(location.store_id, len(rank)))


def require_transition(current: ImageStatus, target: ImageStatus) -> None:
    """Raise InvalidTransition unless the status machine has the edge ``current`` → ``target``."""
    if target != current and target not in TRANSITIONS[current]:
        raise InvalidTransition(f"Image status transition from '{current}' to '{target}' is not allowed.")


def check_transition(image: Image, current: ImageStatus, target: ImageStatus) -> None:
    """``require_transition`` plus the rule that leaving queued/uploading needs both formats set."""
    if target == current:
        return
    require_transition(current, target)
    if current in _NEEDS_FORMATS_FROM and target in _NEEDS_FORMATS_TO:
        for attr in ("container_format", "disk_format"):
            if getattr(image, attr) is None:
                raise InvalidTransition(f"'{attr}' needs to be set before the image can become '{target}'.")


def validate_base_value(
    name: str, value: object, *, disk_formats: Iterable[str], container_formats: Iterable[str]
) -> object:
    """Check one user-supplied base attribute value; return it normalised."""
    types = MUTABLE_BASE_TYPES.get(name)
    if types is None:
        raise InvalidInput(f"Attribute '{name}' cannot be set.")
    # bool is an int subclass: refuse true/false for integer fields, as JSON schema would.
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        wanted = " or ".join(
            "null" if t is type(None) else {bool: "boolean", int: "integer", str: "string"}[t] for t in types
        )
        raise InvalidInput(f"Invalid value {value!r} for attribute '{name}': expected {wanted}.")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InvalidInput(f"Attribute '{name}' is longer than {MAX_STRING} characters.")
        check_text(f"Attribute '{name}'", value)
    if name == "visibility":
        try:
            return Visibility(str(value))
        except ValueError:
            raise InvalidInput(
                f"Invalid visibility {value!r}; choose one of {', '.join(v.value for v in Visibility)}."
            ) from None
    if name in ("min_ram", "min_disk") and isinstance(value, int) and not 0 <= value <= MAX_INT32:
        raise InvalidInput(f"Attribute '{name}' must be an integer from 0 to {MAX_INT32}, got {value}.")
    if name == "disk_format" and value is not None and value not in set(disk_formats):
        raise InvalidInput(f"Invalid disk_format {value!r}; this site accepts: {', '.join(disk_formats)}.")
    if name == "container_format" and value is not None and value not in set(container_formats):
        raise InvalidInput(
            f"Invalid container_format {value!r}; this site accepts: {', '.join(container_formats)}."
        )
    return value


def validate_property_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(
            f"Invalid value for property '{name}': extra properties must be strings, "
            f"got {type(value).__name__}."
        )
    if len(value) > 65535:
        raise InvalidInput(f"Property '{name}' is longer than 65535 characters.")
    return check_text(f"Property '{name}'", value)


def validate_tag(tag: object) -> str:
    if not isinstance(tag, str) or not tag or len(tag) > MAX_STRING:
        raise InvalidInput(
            f"Invalid tag {tag!r}: tags are non-empty strings of at most {MAX_STRING} characters."
        )
    return check_text(f"Tag {tag!r}", tag)
