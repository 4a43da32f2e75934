"""Image metadata use cases: create, show, list, JSON-patch update, delete, deactivate, tags."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from glimpse.config import Settings
from glimpse.context import RequestContext
from glimpse.domain import images as rules
from glimpse.domain import notifications as events
from glimpse.domain.history import HistoryAction, HistoryEntry, HistoryOutcome
from glimpse.domain.images import Image, ImageStatus, Location, Visibility
from glimpse.domain.members import ImageMember, Viewer, is_visible
from glimpse.domain.policy import Policy, image_target
from glimpse.domain.property_protections import PropertyOperation
from glimpse.domain.queries import ImageListQuery
from glimpse.domain.quotas import NO_LIMITS, Limits, Resource, refusal
from glimpse.domain.tasks import Clock, system_clock
from glimpse.errors import (
    Conflict,
    Duplicate,
    Forbidden,
    InvalidInput,
    NotFound,
    OverQuota,
    ReservedAttribute,
    TooLarge,
)
from glimpse.ports import Repositories
from glimpse.services.quotas import admit

#: Base attributes a user may write (create and update), besides tags and custom properties.
_WRITABLE = frozenset(rules.MUTABLE_BASE_TYPES)


@dataclass(frozen=True, slots=True)
class PatchOp:
    """One JSON-patch operation, normalised from either Glance patch media type."""

    op: str
    path: str
    value: Any = None
    has_value: bool = False


def viewer_of(ctx: RequestContext) -> Viewer:
    return Viewer(project_id=ctx.project_id, is_admin=ctx.is_admin)


def new_owners(ops: Sequence[PatchOp]) -> set[str]:
    """The projects a JSON patch names as the image's ``owner`` (whose quotas it may need)."""
    return {
        op.value
        for op in ops
        if op.op in ("add", "replace") and op.path == "/owner" and isinstance(op.value, str) and op.value
    }


def owner_of(ctx: RequestContext, body: Mapping[str, Any]) -> str | None:
    """The project a new image with attributes ``body`` will belong to (whose quotas apply)."""
    owner = body.get("owner")
    return owner if isinstance(owner, str) and owner else ctx.project_id


class ImageService:
    def __init__(
        self, repos: Repositories, settings: Settings, policy: Policy, clock: Clock = system_clock
    ) -> None:
        self.repos = repos
        self.images = repos.images
        self.members = repos.members
        #: Events of this unit of work, sent once it commits.
        self.outbox = repos.outbox
        self.history = repos.history
        self.settings = settings
        self.policy = policy
        #: The time of the history entries this service writes.
        self.clock = clock

    # -- lookups -----------------------------------------------------------------------------------
    def target(
        self, ctx: RequestContext, image: Image, membership: ImageMember | None = None
    ) -> dict[str, object]:
        return image_target(
            owner=image.owner,
            visibility=str(image.visibility),
            member_id=membership.member_id if membership else None,
            member_status=str(membership.status) if membership else None,
            protected=image.protected,
        )

    def load(
        self, ctx: RequestContext, image_id: str, rule: str = "get_image", *, details: bool = True
    ) -> tuple[Image, dict[str, object]]:
        """The image if the caller may see it and ``get_image`` allows it; NotFound otherwise.

        ``details=False`` skips loading properties, tags and locations, for callers that only need
        to know whether the image may be seen (its tasks, for instance).
        """
        if not rules.is_uuid(image_id):
            raise NotFound(f"No image found with ID {image_id}")
        image = self.images.get(image_id, details=details)
        # Only a shared image someone else owns can be seen through membership.
        shared_with_caller = image.visibility == Visibility.SHARED and image.owner != ctx.project_id
        membership = self.members.find(image.id, ctx.project_id) if shared_with_caller else None
        target = self.target(ctx, image, membership)
        if not is_visible(image, viewer_of(ctx), membership) or not self.policy.check(
            "get_image", ctx, target
        ):
            raise NotFound(f"No image found with ID {image_id}")
        if rule != "get_image":
            self.policy.enforce(rule, ctx, target)
        return image, target

    def get(self, ctx: RequestContext, image_id: str) -> Image:
        return self.shown(ctx, self.load(ctx, image_id)[0])

    def list_images(self, ctx: RequestContext, query: ImageListQuery) -> list[Image]:
        self.policy.enforce("get_images", ctx, {"project_id": ctx.project_id})
        return [self.shown(ctx, image) for image in self.images.list(query, viewer_of(ctx))]

    # -- property protections ------------------------------------------------------------------------
    def may(self, ctx: RequestContext, name: str, operation: PropertyOperation) -> bool:
        """Whether the property protections let the caller do ``operation`` to property ``name``.

        The properties the service keeps (``os_glance_*``) are outside them: users never write
        those, and they are shown to whoever sees the image.
        """
        return name.startswith(rules.RESERVED_PREFIX) or self.policy.property_allowed(ctx, name, operation)

    def shown(self, ctx: RequestContext, image: Image) -> Image:
        """The image as the caller may see it: without the properties it may not read."""
        if not self.policy.protections.enabled:
            return image
        readable = {k: v for k, v in image.properties.items() if self.may(ctx, k, PropertyOperation.READ)}
        return image if len(readable) == len(image.properties) else replace(image, properties=readable)

    def _require(self, ctx: RequestContext, name: str, operation: PropertyOperation) -> None:
        if not self.may(ctx, name, operation):
            raise ReservedAttribute(
                f"Property '{name}' is protected: your roles may not {operation} it "
                "(the service's property protections); ask an operator if you need to."
            )

    # -- create ------------------------------------------------------------------------------------
    def create(self, ctx: RequestContext, body: Mapping[str, Any], limits: Limits = NO_LIMITS) -> Image:
        """A new queued image; ``limits`` are its owner's quotas (``image_count_total`` is checked
        in this unit of work, so concurrent creations never exceed it)."""
        now = system_clock().replace(microsecond=0)  # image timestamps are shown in whole seconds
        image = Image(id=str(uuid.uuid4()), owner=ctx.project_id, created_at=now, updated_at=now)
        for name, value in body.items():
            if name == "id":
                if not isinstance(value, str):
                    raise InvalidInput("Attribute 'id' must be a UUID string.")
                image.id = rules.normalize_uuid(value)
            elif name == "tags":
                image.tags = self._validated_tags(value)
            elif name == "locations":
                raise Forbidden(
                    "Attribute 'locations' cannot be set: image locations are managed by the "
                    "service; upload data or use the import API instead."
                )
            elif (
                name in rules.BASE_ATTRIBUTES
                or name in rules.RESERVED_ATTRIBUTES
                or name.startswith(rules.RESERVED_PREFIX)
            ):
                rules.check_property_name(name, creating=True)
                setattr(image, name, self._validated_base(name, value))
            else:
                rules.check_property_name(name, creating=True)
                self._require(ctx, name, PropertyOperation.CREATE)
                image.properties[name] = rules.validate_property_value(name, value)
        if image.owner != ctx.project_id and not ctx.is_admin:
            raise Forbidden(f"You are not permitted to create images owned by '{image.owner}'.")
        self._check_property_quota(image)
        target = self.target(ctx, image)
        self.policy.enforce("add_image", ctx, target)
        self._check_visibility_policy(ctx, image.visibility, target)
        # A fresh random id needs no look-up: the insert itself still refuses a used one.
        if "id" in body and self.images.exists_ever(image.id):
            raise Duplicate(f"An image with identifier {image.id} already exists.")
        if image.owner is not None:
            admit(self.repos, limits, image.owner, Resource.IMAGE_COUNT_TOTAL, system_clock())
        self.images.add(image)
        self.record(ctx, image.id, HistoryAction.CREATE, status=image.status)
        self.announce(ctx, events.IMAGE_CREATE, events.image_payload(image))
        return self.shown(ctx, image)

    def record(
        self,
        ctx: RequestContext,
        image_id: str,
        action: HistoryAction,
        outcome: HistoryOutcome = HistoryOutcome.SUCCESS,
        *,
        stores: tuple[str, ...] = (),
        bytes_moved: int | None = None,
        status: str | None = None,
        message: str = "",
    ) -> None:
        """Add an entry to the image's history, in this unit of work (so with the change it records)."""
        entry = HistoryEntry.by(
            ctx,
            image_id,
            self.clock(),
            action,
            outcome,
            stores=stores,
            bytes_moved=bytes_moved,
            status=None if status is None else str(status),
            message=message,
        )
        self.history.add(entry)

    def announce(self, ctx: RequestContext, event_type: str, payload: Mapping[str, Any]) -> None:
        """Queue an event caused by ``ctx`` for when this unit of work commits."""
        self.outbox.add(events.Event(event_type, payload, ctx.to_dict()))

    def _validated_base(self, name: str, value: object) -> Any:
        return rules.validate_base_value(
            name,
            value,
            disk_formats=self.settings.disk_formats,
            container_formats=self.settings.container_formats,
        )

    def _validated_tags(self, value: object) -> list[str]:
        if not isinstance(value, list):
            raise InvalidInput("Attribute 'tags' must be a list of strings.")
        tags: list[str] = []
        for tag in value:
            checked = rules.validate_tag(tag)
            if checked not in tags:
                tags.append(checked)
        if 0 <= self.settings.image_tag_quota < len(tags):
            raise TooLarge(f"An image can have at most {self.settings.image_tag_quota} tags.")
        return tags

    def _check_property_quota(self, image: Image) -> None:
        user_props = [k for k in image.properties if not k.startswith(rules.RESERVED_PREFIX)]
        if 0 <= self.settings.image_property_quota < len(user_props):
            raise TooLarge(
                f"An image can have at most {self.settings.image_property_quota} extra "
                "properties; remove some before adding more."
            )

    def _check_visibility_policy(
        self, ctx: RequestContext, visibility: Visibility, target: dict[str, object]
    ) -> None:
        if visibility == Visibility.PUBLIC:
            self.policy.enforce("publicize_image", ctx, target)
        elif visibility == Visibility.COMMUNITY:
            self.policy.enforce("communitize_image", ctx, target)

    # -- update ------------------------------------------------------------------------------------
    def update(
        self,
        ctx: RequestContext,
        image_id: str,
        ops: Sequence[PatchOp],
        owner_limits: Mapping[str, Limits] | None = None,
    ) -> Image:
        """Apply a JSON patch. ``owner_limits``: the quotas of each project the patch names as
        ``owner`` (:func:`new_owners`); an image given to another project counts against it."""
        image, target = self.load(ctx, image_id, "modify_image")
        if image.owner != ctx.project_id and not ctx.is_admin:
            raise Forbidden("Only the image owner can change it.")
        expected = image.status
        old_visibility = image.visibility
        for op in ops:
            self._apply(ctx, image, op)
        if image.visibility != old_visibility:
            self._check_visibility_policy(ctx, image.visibility, target)
        if image.owner != target["project_id"] and not ctx.is_admin:
            raise Forbidden("Only an administrator can give an image to another project.")
        if image.owner is not None and image.owner != target["project_id"]:
            self._admit_new_owner(image, image.owner, (owner_limits or {}).get(image.owner, NO_LIMITS))
        self._check_property_quota(image)
        self.images.save(image, expected_status=expected)
        self.announce(ctx, events.IMAGE_UPDATE, events.image_payload(image))
        return self.shown(ctx, image)

    def _admit_new_owner(self, image: Image, owner: str, limits: Limits) -> None:
        """The image counts against ``owner`` from this unit of work on: one more image
        (``image_count_total``) and its data in every store it is in (``image_size_total``),
        checked under ``owner``'s quota row lock like any other change (413 otherwise)."""
        now = self.clock()
        admit(self.repos, limits, owner, Resource.IMAGE_COUNT_TOTAL, now)
        stored = (image.size or 0) * len(image.locations)
        limit = limits.limit(Resource.IMAGE_SIZE_TOTAL)
        if limit is None or stored == 0:
            return
        self.repos.quotas.lock_project(owner, now)
        usage = self.repos.quotas.usage(owner, Resource.IMAGE_SIZE_TOTAL, now)
        if usage + stored > limit:
            raise OverQuota(
                Resource.IMAGE_SIZE_TOTAL.value,
                refusal(Resource.IMAGE_SIZE_TOTAL, owner, limit, usage, stored),
            )

    def _apply(self, ctx: RequestContext, image: Image, op: PatchOp) -> None:
        name = _attribute_of(op.path)
        if op.op not in ("add", "replace", "remove"):
            raise InvalidInput(f"Unsupported JSON-patch operation '{op.op}'; use add, replace or remove.")
        if op.op != "remove" and not op.has_value:
            raise InvalidInput(f"Operation '{op.op}' on '{op.path}' needs a 'value'.")
        if name == "tags":
            if op.op == "remove":
                raise Forbidden("Attribute 'tags' cannot be removed; replace it with an empty list.")
            image.tags = self._validated_tags(op.value)
            return
        if name == "locations":
            raise Forbidden(
                "Image locations are not shown at this site and cannot be changed through "
                "PATCH; upload data or use the import API."
            )
        rules.check_property_name(name, creating=False)
        if name in rules.BASE_ATTRIBUTES:
            if op.op == "remove":
                raise Forbidden(f"Attribute '{name}' is a base attribute and cannot be removed.")
            setattr(image, name, self._validated_base(name, op.value))
            return
        # A property the caller may not read is, to it, a property that does not exist (the value
        # it cannot see is kept when the image is saved, unless it creates the property anew).
        exists = name in image.properties and self.may(ctx, name, PropertyOperation.READ)
        if op.op == "remove":
            if not exists:
                raise Conflict(f"Property {name} does not exist.")
            self._require(ctx, name, PropertyOperation.DELETE)
            del image.properties[name]
        elif op.op == "replace" and not exists:
            raise Conflict(f"Property {name} does not exist.")
        else:
            self._require(ctx, name, PropertyOperation.UPDATE if exists else PropertyOperation.CREATE)
            image.properties[name] = rules.validate_property_value(name, op.value)

    # -- delete / deactivate -----------------------------------------------------------------------
    def delete(self, ctx: RequestContext, image_id: str) -> Image:
        """Soft-delete the image; returns it as it was, so the caller can remove its data afterwards.

        With ``delayed_delete`` an active image with data goes to ``pending_delete`` instead: hidden
        as deleted, its data, locations, properties and members kept until the scrubber removes
        them; the image returned then has no locations (there is no data to remove now).
        """
        image, _ = self.load(ctx, image_id, "delete_image")
        if image.protected:
            raise Forbidden(
                f"Image {image_id} is protected and cannot be deleted; set 'protected' to false first."
            )
        now = system_clock().replace(microsecond=0)
        if self.settings.delayed_delete and image.status == ImageStatus.ACTIVE and image.locations:
            self.images.mark_pending_delete(image.id)
            self.record(ctx, image.id, HistoryAction.DELETE, status=ImageStatus.PENDING_DELETE)
            pending = replace(image, status=ImageStatus.PENDING_DELETE, updated_at=now)
            self.announce(ctx, events.IMAGE_DELETE, events.image_payload(pending, deleted=True))
            return replace(image, locations=[])
        self.images.mark_deleted(image.id, [image.status])
        self.members.remove_all(image.id)
        self.record(ctx, image.id, HistoryAction.DELETE, status=ImageStatus.DELETED)
        gone = replace(image, status=ImageStatus.DELETED, updated_at=now)
        self.announce(ctx, events.IMAGE_DELETE, events.image_payload(gone, deleted=True))
        return image

    def deactivate(self, ctx: RequestContext, image_id: str) -> None:
        image, _ = self.load(ctx, image_id, "deactivate")
        if image.status == ImageStatus.DEACTIVATED:
            return
        if image.status != ImageStatus.ACTIVE:
            raise InvalidInput(
                f"Not allowed to deactivate image in status '{image.status}'; only active "
                "images can be deactivated."
            )
        self.images.set_status(image.id, [ImageStatus.ACTIVE], ImageStatus.DEACTIVATED)
        self.record(ctx, image.id, HistoryAction.DEACTIVATE, status=ImageStatus.DEACTIVATED)

    def reactivate(self, ctx: RequestContext, image_id: str) -> None:
        image, _ = self.load(ctx, image_id, "reactivate")
        if image.status == ImageStatus.ACTIVE:
            return
        if image.status != ImageStatus.DEACTIVATED:
            raise InvalidInput(
                f"Not allowed to reactivate image in status '{image.status}'; only "
                "deactivated images can be reactivated."
            )
        self.images.set_status(image.id, [ImageStatus.DEACTIVATED], ImageStatus.ACTIVE)
        self.record(ctx, image.id, HistoryAction.REACTIVATE, status=ImageStatus.ACTIVE)

    # -- tags --------------------------------------------------------------------------------------
    def add_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        image, _ = self.load(ctx, image_id, "modify_image")
        self._require_owner(ctx, image)
        if tag not in image.tags:
            image.tags = self._validated_tags([*image.tags, tag])
            self.images.save(image, expected_status=image.status)

    def remove_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        image, _ = self.load(ctx, image_id, "modify_image")
        self._require_owner(ctx, image)
        if tag not in image.tags:
            raise NotFound(f"Tag {tag} not found on image {image_id}.")
        image.tags.remove(tag)
        self.images.save(image, expected_status=image.status)

    @staticmethod
    def _require_owner(ctx: RequestContext, image: Image) -> None:
        if image.owner != ctx.project_id and not ctx.is_admin:
            raise Forbidden("Only the image owner can change it.")

    # -- locations (used by the data and store services) -------------------------------------------
    def remove_store(self, ctx: RequestContext, image_id: str, store_id: str) -> Location:
        image, _ = self.load(ctx, image_id, "delete_image_location")
        self._require_owner(ctx, image)
        if image.status != ImageStatus.ACTIVE:
            raise Conflict(
                f"Image {image_id} is '{image.status}'; data can only be removed from a "
                "store of an active image."
            )
        location = next((loc for loc in image.locations if loc.store_id == store_id), None)
        if location is None:
            raise NotFound(f"Image {image_id} has no data in store '{store_id}'.")
        if len(image.locations) == 1:
            raise Conflict(
                f"Store '{store_id}' holds the last copy of image {image_id}; delete the image instead."
            )
        self.images.remove_location(image.id, store_id)
        self.images.touch(image.id)
        self.record(ctx, image.id, HistoryAction.STORE_DELETE, stores=(store_id,), status=image.status)
        return location


def _attribute_of(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1 or path == "/":
        raise InvalidInput(f"Invalid JSON pointer {path!r}: use '/<attribute>', e.g. '/name'.")
    return path[1:].replace("~1", "/").replace("~0", "~")
