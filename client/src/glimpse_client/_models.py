"""Typed views of the server's JSON objects."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

_DONE = frozenset({"success", "failure"})


@dataclass
class Image:
    """An image with Glance's fields; other keys are in ``properties``."""

    id: str
    name: str | None = None
    status: str | None = None
    visibility: str | None = None
    protected: bool = False
    os_hidden: bool = False
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    owner: str | None = None
    size: int | None = None
    virtual_size: int | None = None
    min_ram: int | None = None
    min_disk: int | None = None
    container_format: str | None = None
    disk_format: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    tags: list[str] = field(default_factory=list)
    direct_url: str | None = None
    locations: list[dict[str, Any]] | None = None
    self: str | None = None
    file: str | None = None
    schema: str | None = None
    stores: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def importing_to(self) -> list[str]:
        """The stores an import or copy is writing to now (``os_glance_importing_to_stores``)."""
        value = self.properties.get("os_glance_importing_to_stores")
        return [s for s in value.split(",") if s] if isinstance(value, str) else []

    @property
    def failed_import(self) -> list[str]:
        """The stores the last import or copy failed to write (``os_glance_failed_import``)."""
        value = self.properties.get("os_glance_failed_import")
        return [s for s in value.split(",") if s] if isinstance(value, str) else []

    @property
    def is_importing(self) -> bool:
        """Whether an import or copy is under way, as every Glance shows it: the status
        ``importing``, or stores still listed in ``os_glance_importing_to_stores``."""
        return self.status == "importing" or bool(self.importing_to)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Image:
        known = {f.name for f in fields(cls)} - {"properties", "stores"}
        kwargs = {k: v for k, v in data.items() if k in known}
        stores = data.get("stores")
        props = {k: v for k, v in data.items() if k not in known and k != "stores"}
        return cls(
            **kwargs,
            stores=[s for s in stores.split(",") if s] if isinstance(stores, str) else [],
            properties=props,
        )


@dataclass
class Task:
    """A task as listed under ``/v2/images/{id}/tasks``; ``progress`` is Glimpse's extension."""

    id: str
    type: str | None = None
    status: str | None = None
    owner: str | None = None
    image_id: str | None = None
    request_id: str | None = None
    user_id: str | None = None
    message: str | None = None
    input: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    expires_at: str | None = None
    deleted_at: str | None = None
    deleted: bool = False
    progress: dict[str, Any] | None = None
    #: Who asked to cancel the task and when (Glimpse): ``at``, ``user_id``, ``project_id``,
    #: ``request_id``; None while nobody did.
    cancel_request: dict[str, Any] | None = None

    @property
    def is_done(self) -> bool:
        return self.status in _DONE

    @property
    def eta_seconds(self) -> int | None:
        """Seconds the current phase still needs at the recent rate, as the server estimates them
        (Glimpse); None when unknown, stalled or finished, and on plain Glance."""
        value = (self.progress or {}).get("eta_seconds")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def stalled_since(self) -> str | None:
        """When the last byte moved, while none moves (Glimpse); None while bytes move."""
        value = (self.progress or {}).get("stalled_since")
        return value if isinstance(value, str) else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class HistoryEntry:
    """One entry of ``GET /v2/images/{id}/history`` (Glimpse): what happened to the image, by whom
    (``user_id``, ``project_id`` and ``request_id`` are None when the server hides another project's),
    when, how it ended and the bytes it moved."""

    id: int
    image_id: str
    action: str
    outcome: str
    created_at: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    request_id: str | None = None
    task_id: str | None = None
    stores: list[str] = field(default_factory=list)
    bytes_moved: int | None = None
    status: str | None = None
    message: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Member:
    """A project an image is shared with."""

    member_id: str
    image_id: str
    status: str
    created_at: str | None = None
    updated_at: str | None = None
    schema: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
