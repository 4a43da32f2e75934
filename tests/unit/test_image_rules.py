"""The image status machine and attribute rules, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from glimpse.domain.images import (
    TRANSITIONS,
    Image,
    ImageStatus,
    MemberStatus,
    Visibility,
    check_property_name,
    normalize_uuid,
    validate_base_value,
)
from glimpse.domain.members import ImageMember, Viewer, is_visible
from glimpse.errors import InvalidInput, InvalidTransition, ReservedAttribute

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FORMATS = {"disk_formats": ("raw", "qcow2"), "container_formats": ("bare",)}


def image(**kwargs: object) -> Image:
    defaults: dict[str, object] = {
        "id": "i",
        "owner": "p",
        "created_at": NOW,
        "updated_at": NOW,
        "disk_format": "raw",
        "container_format": "bare",
    }
    defaults.update(kwargs)
    return Image(**defaults)  # type: ignore[arg-type]


# Sorted: frozenset order varies between processes, and xdist workers must collect the same tests.
ALLOWED = [(src, dst) for src, targets in TRANSITIONS.items() for dst in sorted(targets)]
FORBIDDEN = [
    (src, dst) for src in ImageStatus for dst in ImageStatus if dst != src and dst not in TRANSITIONS[src]
]


@pytest.mark.parametrize(("src", "dst"), ALLOWED)
def test_allowed_transitions(src: ImageStatus, dst: ImageStatus) -> None:
    image(status=src).check_transition(dst)


@pytest.mark.parametrize(("src", "dst"), FORBIDDEN)
def test_forbidden_transitions(src: ImageStatus, dst: ImageStatus) -> None:
    with pytest.raises(InvalidTransition):
        image(status=src).check_transition(dst)


def test_glance_paths_exist() -> None:
    assert ImageStatus.SAVING in TRANSITIONS[ImageStatus.QUEUED]
    assert ImageStatus.ACTIVE in TRANSITIONS[ImageStatus.SAVING]
    assert ImageStatus.QUEUED in TRANSITIONS[ImageStatus.SAVING]
    assert ImageStatus.IMPORTING in TRANSITIONS[ImageStatus.UPLOADING]
    assert TRANSITIONS[ImageStatus.DELETED] == frozenset()


def test_leaving_queued_needs_formats() -> None:
    with pytest.raises(InvalidTransition, match="disk_format"):
        image(status=ImageStatus.QUEUED, disk_format=None).check_transition(ImageStatus.SAVING)
    image(status=ImageStatus.QUEUED, disk_format=None).check_transition(ImageStatus.DELETED)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("os_glance_import_task", "reserved"),
        ("os_glance_anything", "reserved"),
        ("deleted", "reserved"),
        ("location", "reserved"),
        ("status", "read-only"),
        ("checksum", "read-only"),
        ("size", "read-only"),
        ("stores", "read-only"),
        ("id", "read-only"),
    ],
)
def test_names_users_cannot_write(name: str, fragment: str) -> None:
    with pytest.raises(ReservedAttribute, match=fragment):
        check_property_name(name, creating=False)


def test_id_may_be_given_on_create() -> None:
    check_property_name("id", creating=True)
    assert (
        normalize_uuid("3FA85F64571745 62B3FC2C963F66AFA6".replace(" ", ""))
        == "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    )
    with pytest.raises(InvalidInput):
        normalize_uuid("nope")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("min_ram", True),
        ("min_ram", -1),
        ("min_disk", "1"),
        ("protected", 1),
        ("visibility", "world"),
        ("disk_format", "floppy"),
        ("container_format", "box"),
        ("name", 5),
        ("name", "n" * 256),
    ],
)
def test_bad_base_values(name: str, value: object) -> None:
    with pytest.raises(InvalidInput):
        validate_base_value(name, value, **FORMATS)


def test_good_base_values() -> None:
    assert validate_base_value("visibility", "community", **FORMATS) is Visibility.COMMUNITY
    assert validate_base_value("name", None, **FORMATS) is None
    assert validate_base_value("min_disk", 0, **FORMATS) == 0


def member(status: MemberStatus = MemberStatus.PENDING) -> ImageMember:
    return ImageMember(image_id="i", member_id="m", status=status, created_at=NOW, updated_at=NOW)


@pytest.mark.parametrize(
    ("visibility", "viewer", "membership", "visible"),
    [
        (Visibility.PRIVATE, Viewer("p"), None, True),
        (Visibility.PRIVATE, Viewer("q"), None, False),
        (Visibility.PRIVATE, Viewer("q", is_admin=True), None, True),
        (Visibility.PUBLIC, Viewer("q"), None, True),
        (Visibility.COMMUNITY, Viewer(None), None, True),
        (Visibility.SHARED, Viewer("q"), None, False),
        (Visibility.SHARED, Viewer("m"), member(), True),
        (Visibility.SHARED, Viewer("m"), member(MemberStatus.REJECTED), True),
        (Visibility.PRIVATE, Viewer("m"), member(MemberStatus.ACCEPTED), False),
    ],
)
def test_visibility(
    visibility: Visibility, viewer: Viewer, membership: ImageMember | None, visible: bool
) -> None:
    assert is_visible(image(visibility=visibility), viewer, membership) is visible
