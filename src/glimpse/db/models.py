"""ORM tables. Column names follow Glance's where Glance has the same concept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from glimpse.db.base import Base, LongText, UTCDateTime

__all__ = [
    "Base",
    "IdempotencyKeyRow",
    "ImageHistoryRow",
    "ImageLocationRow",
    "ImageMemberRow",
    "ImagePropertyRow",
    "ImageRow",
    "ImageTagRow",
    "MetadefAssociationRow",
    "MetadefEntryRow",
    "MetadefNamespaceRow",
    "MetadefResourceTypeRow",
    "QuotaProjectRow",
    "QuotaReservationRow",
    "TaskRow",
]


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(30))
    visibility: Mapped[str] = mapped_column(String(20))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    os_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    checksum: Mapped[str | None] = mapped_column(String(32))
    os_hash_algo: Mapped[str | None] = mapped_column(String(64))
    os_hash_value: Mapped[str | None] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    container_format: Mapped[str | None] = mapped_column(String(32))
    disk_format: Mapped[str | None] = mapped_column(String(32))
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The import lock: the id of the task that holds it (shown as ``os_glance_import_task``).
    import_task_id: Mapped[str | None] = mapped_column(String(36))
    #: Bumped by every ``hold_lock``, so the holder's re-check is a real write of the row.
    import_lock_version: Mapped[int | None] = mapped_column(Integer)

    properties: Mapped[list[ImagePropertyRow]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="raise", order_by="ImagePropertyRow.id"
    )
    tags: Mapped[list[ImageTagRow]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="raise", order_by="ImageTagRow.id"
    )
    locations: Mapped[list[ImageLocationRow]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="raise", order_by="ImageLocationRow.id"
    )

    __table_args__ = (
        Index("ix_images_listing", "deleted", "created_at", "id"),
        Index("ix_images_owner", "owner"),
        Index("ix_images_visibility", "visibility"),
        Index("ix_images_status", "status"),
        Index("ix_images_name", "name"),
    )


class ImagePropertyRow(Base):
    __tablename__ = "image_properties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(String(36), ForeignKey("images.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(LongText)

    image: Mapped[ImageRow] = relationship(back_populates="properties", lazy="raise")

    __table_args__ = (
        UniqueConstraint("image_id", "name"),
        Index("ix_image_properties_name", "name"),
    )


class ImageTagRow(Base):
    __tablename__ = "image_tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(String(36), ForeignKey("images.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(String(255))

    image: Mapped[ImageRow] = relationship(back_populates="tags", lazy="raise")

    __table_args__ = (
        UniqueConstraint("image_id", "value"),
        Index("ix_image_tags_value", "value"),
    )


class ImageLocationRow(Base):
    __tablename__ = "image_locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(String(36), ForeignKey("images.id", ondelete="CASCADE"))
    store_id: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(LongText)
    meta_data: Mapped[str] = mapped_column(LongText, default="{}")
    status: Mapped[str] = mapped_column(String(30), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    image: Mapped[ImageRow] = relationship(back_populates="locations", lazy="raise")

    __table_args__ = (
        UniqueConstraint("image_id", "store_id"),
        Index("ix_image_locations_image_id", "image_id"),
    )


class ImageMemberRow(Base):
    __tablename__ = "image_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(String(36), ForeignKey("images.id", ondelete="CASCADE"))
    member: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("image_id", "member"),
        Index("ix_image_members_member", "member"),
    )


class TaskRow(Base):
    """Glance's ``tasks`` and ``task_info`` in one table, plus what a durable runner needs."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(30))
    owner: Mapped[str | None] = mapped_column(String(255))
    image_id: Mapped[str | None] = mapped_column(String(36))
    request_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))
    input: Mapped[str] = mapped_column(LongText, default="{}")
    result: Mapped[str | None] = mapped_column(LongText)
    message: Mapped[str] = mapped_column(LongText, default="")
    progress: Mapped[str] = mapped_column(LongText, default="{}")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: The node (its ``worker_self_reference_url``) whose runners alone may claim the task, because
    #: the data it needs was staged there; NULL: any runner.
    stage_host: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_tasks_image_id", "image_id", "created_at"),
        Index("ix_tasks_status", "status", "created_at"),
        Index("ix_tasks_owner", "owner"),
        Index("ix_tasks_expires_at", "expires_at"),
    )


class MetadefNamespaceRow(Base):
    __tablename__ = "metadef_namespaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(80))
    display_name: Mapped[str | None] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(LongText)
    visibility: Mapped[str] = mapped_column(String(32))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("namespace"),
        Index("ix_metadef_namespaces_owner", "owner"),
        Index("ix_metadef_namespaces_listing", "created_at", "id"),
    )


class MetadefEntryRow(Base):
    """A namespace's objects, properties and tags (``kind``), each a JSON definition (``{}`` for a tag)."""

    __tablename__ = "metadef_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(LongText, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("namespace_id", "kind", "name"),)


class MetadefResourceTypeRow(Base):
    __tablename__ = "metadef_resource_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("name"),)


class MetadefAssociationRow(Base):
    """A namespace's association with a resource type, with the prefix its property names take there."""

    __tablename__ = "metadef_namespace_resource_types"

    #: Insertion order: associations are listed in the order they were made (a file's order).
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE")
    )
    resource_type_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_resource_types.id", ondelete="CASCADE")
    )
    prefix: Mapped[str | None] = mapped_column(String(80))
    properties_target: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("namespace_id", "resource_type_id"),
        Index("ix_metadef_namespace_resource_types_resource_type_id", "resource_type_id"),
    )


class IdempotencyKeyRow(Base):
    """One ``Idempotency-Key`` of a project: the claim of its first request, then that request's answer.

    The primary key is the claim: of two requests inserting the same (scope, key), one fails.
    """

    __tablename__ = "idempotency_keys"

    #: The project the key belongs to (``user:<id>`` for a caller without one).
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    idem_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    claim_id: Mapped[str] = mapped_column(String(36))
    #: SHA-256 (hex) of the request; NULL while a streamed body is still being hashed.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: The answer: NULL while the first request runs.
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[str | None] = mapped_column(LongText)
    response_body: Mapped[str | None] = mapped_column(LongText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)


class ImageHistoryRow(Base):
    """One entry of an image's history (``glimpse.domain.history``). No foreign key to ``images``:
    the history of a deleted image stays until it is purged by age."""

    __tablename__ = "image_history"

    #: Grows with every entry: the order of the history (newest first) and the paging marker.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(String(36))
    #: The stores concerned, comma-separated.
    stores: Mapped[str | None] = mapped_column(LongText)
    bytes_moved: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str | None] = mapped_column(String(30))
    message: Mapped[str | None] = mapped_column(LongText)

    __table_args__ = (
        Index("ix_image_history_image_id", "image_id", "id"),
        Index("ix_image_history_created_at", "created_at"),
    )


class QuotaProjectRow(Base):
    """One row per project that ever reserved quota: the row a quota check locks (``SELECT ... FOR
    UPDATE``), so that two checks for one project run one after the other on every node."""

    __tablename__ = "quota_projects"

    project: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuotaReservationRow(Base):
    """Bytes of a size quota held for data being written (an upload or a stage), until the data
    counts through its image or the write fails; dropped once ``expires_at`` passes unrenewed."""

    __tablename__ = "quota_reservations"

    #: ``image_size_total`` or ``image_stage_total``.
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: The image whose data is being written.
    holder: Mapped[str] = mapped_column(String(36), primary_key=True)
    project: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_quota_reservations_project_resource", "project", "resource"),
        Index("ix_quota_reservations_expires_at", "expires_at"),
    )
