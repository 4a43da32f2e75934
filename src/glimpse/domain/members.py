"""Image members (sharing) and who can see an image."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from glimpse.domain.images import Image, MemberStatus, Visibility


@dataclass(slots=True)
class ImageMember:
    image_id: str
    member_id: str
    status: MemberStatus
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Viewer:
    """The part of a request context that decides what a caller can see."""

    project_id: str | None
    is_admin: bool = False


def is_visible(image: Image, viewer: Viewer, membership: ImageMember | None) -> bool:
    """Whether ``viewer`` may see ``image`` at all (otherwise it is reported as not found)."""
    if viewer.is_admin:
        return True
    if image.owner is not None and image.owner == viewer.project_id:
        return True
    if image.visibility in (Visibility.PUBLIC, Visibility.COMMUNITY):
        return True
    return image.visibility == Visibility.SHARED and membership is not None
