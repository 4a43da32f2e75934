"""``glimpse member create|list|set|delete``: sharing an image with other projects."""

from __future__ import annotations

import argparse
from typing import Any

from glimpse_client import Client, Member
from glimpse_client._cloud import SessionAuth

from .base import GlimpseCommand, GlimpseLister, GlimpseShowOne, looks_like_id
from .errors import UsageError

MEMBER_COLUMNS = ("Image ID", "Member ID", "Status", "Created At", "Updated At")


def _row(member: Member) -> tuple[Any, ...]:
    return (member.image_id, member.member_id, member.status, member.created_at, member.updated_at)


def _fields(member: Member) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    return ("image_id", "member_id", "status", "created_at", "updated_at"), _row(member)


def _image_and_project(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image name or ID")
    parser.add_argument("project", metavar="PROJECT", help="the member project's ID")


class CreateMember(GlimpseShowOne):
    """Share an image with a project (by the image's owner); the member then accepts or rejects it."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        _image_and_project(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        image = self.image(parsed_args.image)
        return _fields(self.client.add_member(image.id, parsed_args.project))


class ListMembers(GlimpseLister):
    """List the projects an image is shared with."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        image = self.image(parsed_args.image)
        return MEMBER_COLUMNS, [_row(m) for m in self.client.list_members(image.id)]


def _token_project(client: Client) -> str | None:
    """The project of the Keystone token a cloud connection sends, if it sends one."""
    auth = client.config.auth
    return auth.project_id() if isinstance(auth, SessionAuth) else None


class SetMember(GlimpseShowOne):
    """Accept, reject or reset a shared image (by the member project)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image ID (or name, if you can list it)")
        parser.add_argument(
            "--project",
            metavar="PROJECT",
            help="the member project (default: the project you act as: --project-id, or the project "
            "of the cloud's Keystone token)",
        )
        status = parser.add_mutually_exclusive_group(required=True)
        status.add_argument("--accept", dest="status", action="store_const", const="accepted")
        status.add_argument("--reject", dest="status", action="store_const", const="rejected")
        status.add_argument("--pending", dest="status", action="store_const", const="pending")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        project = parsed_args.project or self.client.config.project_id or _token_project(self.client)
        if not project:
            raise UsageError("give the member project with --project (it is not known from the connection)")
        # A member may not be allowed to read an image it has not accepted yet: an id is used as is.
        ref: str = parsed_args.image
        image_id = ref if looks_like_id(ref) else self.image(ref).id
        return _fields(self.client.update_member(image_id, project, parsed_args.status))


class DeleteMember(GlimpseCommand):
    """Stop sharing an image with a project."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        _image_and_project(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        image = self.image(parsed_args.image)
        self.client.remove_member(image.id, parsed_args.project)
        return 0
