"""Sharing: the owner adds and removes members; each member accepts or rejects."""

from __future__ import annotations

from glimpse.context import RequestContext
from glimpse.domain import notifications as events
from glimpse.domain.images import Image, MemberStatus, Visibility, check_text
from glimpse.domain.members import ImageMember
from glimpse.errors import Forbidden, InvalidInput, NotFound, TooLarge
from glimpse.services.images import ImageService


class MemberService:
    def __init__(self, images: ImageService) -> None:
        self.images = images
        self.members = images.members
        self.settings = images.settings
        self.policy = images.policy

    @staticmethod
    def _require_shared(image: Image) -> None:
        if image.visibility != Visibility.SHARED:
            raise Forbidden(
                f"Only shared images have members; image {image.id} is '{image.visibility}'. "
                "Set its visibility to 'shared' first."
            )

    def _require_owner(self, ctx: RequestContext, image: Image) -> None:
        if image.owner != ctx.project_id and not ctx.is_admin:
            raise Forbidden("Only the image owner can manage its members.")

    def add(self, ctx: RequestContext, image_id: str, member_id: object) -> ImageMember:
        if not isinstance(member_id, str) or not member_id or len(member_id) > 255:
            raise InvalidInput("'member' must be a project id: a non-empty string of at most 255 characters.")
        check_text("'member'", member_id)
        image, _ = self.images.load(ctx, image_id, "add_member")
        self._require_owner(ctx, image)
        self._require_shared(image)
        quota = self.settings.image_member_quota
        if 0 <= quota <= self.members.count(image.id):
            raise TooLarge(
                f"Image {image_id} already has the maximum of {self.settings.image_member_quota} members."
            )
        member = self.members.add(image.id, member_id)
        self.images.announce(ctx, events.MEMBER_CREATE, events.member_payload(member))
        return member

    def list_members(self, ctx: RequestContext, image_id: str) -> list[ImageMember]:
        image, _ = self.images.load(ctx, image_id, "get_members")
        self._require_shared(image)
        members = self.members.list(image.id)
        if image.owner == ctx.project_id or ctx.is_admin:
            return members
        return [m for m in members if m.member_id == ctx.project_id]

    def get(self, ctx: RequestContext, image_id: str, member_id: str) -> ImageMember:
        image, _ = self.images.load(ctx, image_id, "get_member")
        self._require_shared(image)
        if image.owner != ctx.project_id and not ctx.is_admin and member_id != ctx.project_id:
            raise NotFound(f"Member {member_id} of image {image_id} not found.")
        return self.members.get(image.id, member_id)

    def set_status(self, ctx: RequestContext, image_id: str, member_id: str, status: object) -> ImageMember:
        try:
            new_status = MemberStatus(status) if isinstance(status, str) else None
        except ValueError:
            new_status = None
        if new_status is None:
            raise InvalidInput(f"Invalid member status {status!r}; use pending, accepted or rejected.")
        image, _ = self.images.load(ctx, image_id, "modify_member")
        self._require_shared(image)
        if member_id != ctx.project_id:
            if image.owner == ctx.project_id or ctx.is_admin:
                self.members.get(image.id, member_id)
                raise Forbidden("Only the member itself can accept or reject an image shared with it.")
            raise NotFound(f"Member {member_id} of image {image_id} not found.")
        member = self.members.set_status(image.id, member_id, new_status)
        self.images.announce(ctx, events.MEMBER_UPDATE, events.member_payload(member))
        return member

    def remove(self, ctx: RequestContext, image_id: str, member_id: str) -> None:
        image, _ = self.images.load(ctx, image_id, "delete_member")
        self._require_owner(ctx, image)
        self._require_shared(image)
        member = self.members.get(image.id, member_id)
        self.members.remove(image.id, member_id)
        self.images.announce(ctx, events.MEMBER_DELETE, events.member_payload(member, deleted=True))
