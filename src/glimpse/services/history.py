"""Reading an image's history (``GET /v2/images/{id}/history``), redacted per viewer."""

from __future__ import annotations

from glimpse.context import RequestContext
from glimpse.domain.history import HistoryEntry, visible_entry
from glimpse.domain.images import is_uuid, normalize_uuid
from glimpse.domain.policy import PolicyRule, image_target
from glimpse.errors import Forbidden, NotFound
from glimpse.ports import Repositories
from glimpse.services.images import ImageService


class HistoryService:
    def __init__(self, repos: Repositories, images: ImageService) -> None:
        self.images = images
        self.history = repos.history

    def image_history(
        self, ctx: RequestContext, image_id: str, *, limit: int, marker: int | None
    ) -> list[HistoryEntry]:
        """One page of the image's history, newest first, as the caller may see it.

        Whoever can see the image may read its history (rule ``get_image_history``, by default the
        same as ``get_image``); entries of other projects lose who made them as
        :func:`~glimpse.domain.history.visible_entry` says. A deleted image's history is read by
        administrators only (to everyone else the image does not exist any more), until it is purged.
        """
        try:
            image, target = self.images.load(ctx, image_id, details=False)
            key, owner = image.id, image.owner
        except NotFound:
            key = normalize_uuid(image_id) if ctx.is_admin and is_uuid(image_id) else ""
            if not key or not self.images.images.exists_ever(key):
                raise
            owner, target = None, image_target(owner=None, visibility="private")
        try:
            self.images.policy.enforce(PolicyRule.GET_IMAGE_HISTORY, ctx, target)
        except Forbidden as exc:
            exc.message += " Reading an image's history is allowed by the rule get_image_history."
            raise
        entries = self.history.for_image(key, limit=limit, marker=marker)
        return [visible_entry(ctx.project_id, ctx.is_admin, owner, entry) for entry in entries]
