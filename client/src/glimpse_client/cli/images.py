"""``glimpse image list|show|set|delete|deactivate|reactivate``."""

from __future__ import annotations

import argparse
from itertools import islice
from typing import Any

from glimpse_client import Image

from .base import (
    GlimpseCommand,
    GlimpseLister,
    GlimpseShowOne,
    ListColumn,
    image_fields,
    key_value,
)
from .errors import UsageError, report
from .exitcodes import ExitCode

VISIBILITIES = ("public", "private", "shared", "community")
LIST_COLUMNS = ("ID", "Name", "Status")
LONG_LIST_COLUMNS = (
    "ID",
    "Name",
    "Disk Format",
    "Container Format",
    "Size",
    "Checksum",
    "Status",
    "Visibility",
    "Protected",
    "Project",
    "Tags",
    "Stores",
)
#: The largest page ``image list`` asks for (servers cap it at their ``api_limit_max``).
MAX_PAGE = 1000


def _long_row(image: Image) -> tuple[Any, ...]:
    return (
        image.id,
        image.name,
        image.disk_format,
        image.container_format,
        image.size,
        image.checksum,
        image.status,
        image.visibility,
        image.protected,
        image.owner,
        ListColumn(image.tags),
        ListColumn(image.stores),
    )


class ListImages(GlimpseLister):
    """List images (every page, following the server's next links)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--name", help="only images with exactly this name")
        parser.add_argument("--status", help="only images in this status (queued, active, ...)")
        parser.add_argument("--visibility", choices=(*VISIBILITIES, "all"), help="only this visibility")
        parser.add_argument("--owner", "--project", dest="owner", metavar="PROJECT", help="only this owner")
        parser.add_argument(
            "--tag", action="append", default=[], help="only images with this tag (repeat for several)"
        )
        parser.add_argument(
            "--property",
            action="append",
            default=[],
            type=key_value,
            metavar="KEY=VALUE",
            help="only images with this property value (repeat for several)",
        )
        parser.add_argument("--limit", type=int, metavar="N", help="list at most N images")
        parser.add_argument(
            "--sort",
            metavar="KEY[:asc|desc][,…]",
            help="server-side sort, e.g. name:asc,created_at:desc",
        )
        parser.add_argument("--long", action="store_true", help="more columns")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        filters: dict[str, Any] = dict(parsed_args.property)
        for name in ("name", "status", "visibility", "owner", "sort"):
            value = getattr(parsed_args, name)
            if value is not None:
                filters[name] = value
        tags: list[str] = parsed_args.tag
        if tags:
            filters["tag"] = tags[0]  # the server takes one here; the others are checked below
        limit: int | None = parsed_args.limit
        if limit is not None and limit < 0:
            raise UsageError("--limit must be 0 or more")
        page = min(limit, MAX_PAGE) if limit else None
        images = (i for i in self.client.list_images(page_size=page, **filters) if set(tags) <= set(i.tags))
        chosen = list(islice(images, limit) if limit is not None else images)
        if parsed_args.long:
            return LONG_LIST_COLUMNS, [_long_row(i) for i in chosen]
        return LIST_COLUMNS, [(i.id, i.name, i.status) for i in chosen]


class ShowImage(GlimpseShowOne):
    """Show an image."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        return image_fields(self.image(parsed_args.image))


def add_image_attributes(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    """Options shared by ``image create`` and ``image set``."""
    if not creating:
        parser.add_argument("--name", help="new name")
    parser.add_argument(
        "--disk-format",
        default="raw" if creating else None,
        help="disk format" + (" (default raw)" if creating else ""),
    )
    parser.add_argument(
        "--container-format",
        default="bare" if creating else None,
        help="container format" + (" (default bare)" if creating else ""),
    )
    parser.add_argument("--visibility", choices=VISIBILITIES)
    protected = parser.add_mutually_exclusive_group()
    protected.add_argument("--protected", dest="protected", action="store_const", const=True, help="protect")
    protected.add_argument(
        "--unprotected", dest="protected", action="store_const", const=False, help="unprotect"
    )
    hidden = parser.add_mutually_exclusive_group()
    hidden.add_argument(
        "--hidden", dest="os_hidden", action="store_const", const=True, help="hide from lists"
    )
    hidden.add_argument(
        "--unhidden", dest="os_hidden", action="store_const", const=False, help="show in lists"
    )
    parser.add_argument("--min-disk", type=int, metavar="GB", help="minimum disk size")
    parser.add_argument("--min-ram", type=int, metavar="MB", help="minimum RAM")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="set a property (repeat for several)",
    )
    parser.add_argument("--tag", action="append", default=[], help="add a tag (repeat for several)")


def image_changes(parsed_args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = dict(parsed_args.property)
    for name in (
        "name",
        "disk_format",
        "container_format",
        "visibility",
        "protected",
        "os_hidden",
        "min_disk",
        "min_ram",
    ):
        value = getattr(parsed_args, name, None)
        if value is not None:
            changes[name] = value
    return changes


class SetImage(GlimpseCommand):
    """Change an image's attributes, properties and tags."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        add_image_attributes(parser, creating=False)
        parser.add_argument(
            "--remove-property", action="append", default=[], metavar="KEY", help="remove a property (repeat)"
        )
        parser.add_argument(
            "--remove-tag", action="append", default=[], metavar="TAG", help="remove a tag (repeat)"
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        changes = image_changes(parsed_args)
        for key in parsed_args.remove_property:
            if key in changes:
                raise UsageError(f"property {key!r} is both set and removed")
            changes[key] = None
        image = self.image(parsed_args.image)
        if changes:
            self.client.update_image(image.id, changes)
        for tag in parsed_args.tag:
            self.client.add_tag(image.id, tag)
        for tag in parsed_args.remove_tag:
            self.client.remove_tag(image.id, tag)
        return 0


class DeleteImage(GlimpseCommand):
    """Delete one or more images."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("images", metavar="IMAGE", nargs="+", help="image names or IDs")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        failed = 0
        for ref in parsed_args.images:
            try:
                self.client.delete_image(self.image(ref).id)
            except Exception as error:  # report each one and go on with the others
                failed += 1
                report(
                    error,
                    stream=self.app.stderr,
                    prog=self.glimpse.PROG,
                    image_ref=ref,
                    debug=self.glimpse.debug,
                )
        if failed:
            total = len(parsed_args.images)
            self.app.stderr.write(f"{self.glimpse.PROG}: failed to delete {failed} of {total} images\n")
            return int(ExitCode.ERROR)
        return 0


class DeactivateImage(GlimpseCommand):
    """Deactivate an image (its data can no longer be downloaded)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        self.client.deactivate_image(self.image(parsed_args.image).id)
        return 0


class ReactivateImage(GlimpseCommand):
    """Reactivate a deactivated image."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        self.client.reactivate_image(self.image(parsed_args.image).id)
        return 0
