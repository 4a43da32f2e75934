"""``glimpse image create|import|copy``: start imports and copies, and follow them with ``--wait``."""

from __future__ import annotations

import argparse
import math
import shlex
from dataclasses import dataclass
from typing import Any

from glimpse_client import Image, RemoteImage, Task, TaskTimeout

from ._text import failed_stores, store_states
from .base import GlimpseShowOne, _Shared, image_fields, store_list
from .conflict import watch_command
from .errors import UsageError
from .exitcodes import ExitCode, image_outcome, outcome
from .images import add_image_attributes, image_changes
from .images_data import readable_file, send_file
from .progress import follow_task, still_running_hint

CREATE_METHODS = ("glance-direct", "web-download")
IMPORT_METHODS = ("glance-direct", "web-download", "copy-image", "glance-download")


def add_target_options(parser: argparse.ArgumentParser, *, copying: bool, retrying: bool = True) -> None:
    """Which stores, what a failing store means, and whether to wait (``retrying``: an existing
    image, whose failed stores ``--retry-failed`` may target)."""
    targets = parser.add_mutually_exclusive_group(required=copying)
    if not copying:
        targets.add_argument(
            "--store", metavar="STORE", help="the one store to import to (or, without --import, upload to)"
        )
    targets.add_argument("--stores", type=store_list, metavar="A,B", help="the stores to import to")
    targets.add_argument("--all-stores", action="store_true", help="every store of the site")
    if retrying:
        targets.add_argument(
            "--retry-failed",
            action="store_true",
            help="exactly the stores the image's last import or copy failed to write "
            "(os_glance_failed_import; Glimpse only); on an active image an import retries them as a copy",
        )
    parser.add_argument(
        "--allow-failure",
        action="store_true",
        help="keep the stores that worked when others fail (all_stores_must_succeed=false); "
        "the exit code is then 4 if any requested store failed",
    )
    if not copying:
        parser.add_argument(
            "--checksum",
            metavar="ALGORITHM:HEX",
            help="the digest the imported data must have, e.g. sha256:9f86d08... (the import fails "
            "and keeps nothing when the data differs)",
        )
    parser.add_argument(
        "--deadline",
        type=_seconds,
        metavar="SECONDS",
        help="the task must end within this many seconds, or the server stops it and undoes its "
        "work (Glimpse only)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the task with progress bars until it ends (see exit codes)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        dest="wait_timeout",
        help="with --wait: stop waiting after this long (exit code 5; the task goes on)",
    )


def _seconds(text: str) -> int:
    """A whole number of seconds above 0 (``--deadline``)."""
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds above 0")
    return int(text)


@dataclass
class Targets:
    stores: list[str] | None
    all_stores: bool
    allow_failure: bool
    retry_failed: bool = False

    @classmethod
    def from_args(cls, parsed_args: argparse.Namespace) -> Targets:
        store = getattr(parsed_args, "store", None)
        stores = [store] if store else parsed_args.stores
        return cls(
            stores=stores,
            all_stores=bool(parsed_args.all_stores),
            allow_failure=parsed_args.allow_failure,
            retry_failed=bool(getattr(parsed_args, "retry_failed", False)),
        )


def _check_wait(parsed_args: argparse.Namespace) -> None:
    if parsed_args.wait_timeout is not None and not parsed_args.wait:
        raise UsageError("--timeout needs --wait")
    if parsed_args.wait_timeout is not None and parsed_args.wait_timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")


def _summary(task: Task, image: Image, code: ExitCode, ref: str) -> str:
    if code is ExitCode.FAILED:
        return f"Task {task.id} failed: {task.message or 'no reason given'}"
    held = ", ".join(image.stores) or "no store"
    if code is ExitCode.PARTIAL:
        states = {s.name: s for s in store_states(task)}
        failed = failed_stores(task) or image.failed_import
        reasons = "; ".join(
            f"{name}: {states[name].error}" if name in states and states[name].error else name
            for name in failed
        )
        return f"Task {task.id} succeeded, but some stores failed ({reasons}). Image {ref} is in: {held}."
    return f"Task {task.id} succeeded. Image {ref} is in: {held}."


def start_import(
    command: _Shared, image: Image, ref: str, method: str, parsed_args: argparse.Namespace
) -> tuple[ExitCode, Image]:
    """Start the import or copy the command line asks for (target and wait options, ``--uri``);
    with ``--wait``, follow it and work out the exit code."""
    targets = Targets.from_args(parsed_args)
    wait, timeout = parsed_args.wait, parsed_args.wait_timeout
    uri: str | None = getattr(parsed_args, "uri", None)
    checksum: str | None = getattr(parsed_args, "checksum", None)
    remote = None
    if method == "glance-download":
        remote = RemoteImage(
            image_id=parsed_args.remote_image,
            region=parsed_args.remote_region,
            interface=parsed_args.remote_interface or "public",
        )
    client = command.client
    try:
        handle = client.import_image(
            image.id,
            method,
            uri=uri,
            stores=targets.stores,
            all_stores=targets.all_stores,
            allow_failure=targets.allow_failure,
            checksum=checksum,
            retry_failed=targets.retry_failed,
            deadline=getattr(parsed_args, "deadline", None),
            remote=remote,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if handle is None:
        return _without_task(command, image.id, ref, targets, wait=wait, timeout=timeout)
    command.say(f"Started {method} task {handle.task_id} on image {ref}.")
    if not wait:
        command.say(f"Watch it with: {watch_command(ref)}")
        return ExitCode.OK, client.get_image(image.id)
    try:
        task = follow_task(handle, console=command.console, timeout=timeout, image_ref=ref)
    except TaskTimeout:
        command.say(f"Stopped waiting after {timeout:g} s. {still_running_hint(handle.task_id, ref)}")
        return ExitCode.TIMEOUT, client.get_image(image.id)
    final = client.get_image(image.id)
    code = outcome(task, final, targets.stores)
    command.say(_summary(task, final, code, ref))
    return code, final


def _without_task(
    command: _Shared, image_id: str, ref: str, targets: Targets, *, wait: bool, timeout: float | None
) -> tuple[ExitCode, Image]:
    """The server named no task: none was needed, or the server cannot say which (Glance before API
    2.12). With ``wait``, an import under way is then followed through the image itself."""
    client = command.client
    show = f"{command.glimpse.PROG} image show {shlex.quote(ref)}"
    current = client.get_image(image_id)
    if not current.is_importing:
        command.say(f"The server started no task (every store already holds the image). See: {show}")
        return ExitCode.OK, current
    if not wait:
        command.say(f"Import started; the server names no task for it. Follow the image with: {show}")
        return ExitCode.OK, current
    command.say(f"Import started; the server names no task for it, so waiting on image {ref} itself.")
    try:
        final = client.wait_for_import(image_id, math.inf if timeout is None else timeout)
    except TaskTimeout:
        command.say(f"Stopped waiting after {timeout:g} s; the import goes on on the server. See: {show}")
        return ExitCode.TIMEOUT, client.get_image(image_id)
    code = image_outcome(final, targets.stores)
    held = ", ".join(final.stores) or "no store"
    if code is ExitCode.FAILED:
        command.say(f"The import failed: image {ref} is {final.status}.")
    elif code is ExitCode.PARTIAL:
        failed = ", ".join(final.failed_import) or "some requested stores"
        command.say(f"The import ended, but {failed} failed. Image {ref} is in: {held}.")
    else:
        command.say(f"The import ended. Image {ref} is in: {held}.")
    return code, final


class CreateImage(GlimpseShowOne):
    """Create an image; with --file upload its data, with --import import it (and --wait to follow)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="NAME", help="image name")
        add_image_attributes(parser, creating=True)
        parser.add_argument(
            "--file", type=readable_file, metavar="FILE", help="image data: uploaded, or staged with --import"
        )
        parser.add_argument(
            "--import",
            dest="method",
            choices=CREATE_METHODS,
            help="import the data instead of uploading it (--uri alone means web-download)",
        )
        parser.add_argument("--uri", metavar="URL", help="where web-download fetches the data")
        add_target_options(parser, copying=False, retrying=False)
        return parser

    def _method(self, parsed_args: argparse.Namespace) -> str | None:
        method: str | None = parsed_args.method
        if method is None and parsed_args.uri:
            method = "web-download"
        if method == "glance-direct" and parsed_args.file is None:
            raise UsageError("--import glance-direct needs --file")
        if method == "web-download" and not parsed_args.uri:
            raise UsageError("--import web-download needs --uri")
        if method == "web-download" and parsed_args.file is not None:
            raise UsageError("--file and --uri cannot be used together")
        if method is None:
            given = [
                flag
                for flag, value in (
                    ("--store", parsed_args.store and parsed_args.file is None),
                    ("--stores", parsed_args.stores),
                    ("--all-stores", parsed_args.all_stores),
                    ("--allow-failure", parsed_args.allow_failure),
                    ("--checksum", parsed_args.checksum),
                    ("--wait", parsed_args.wait),
                )
                if value
            ]
            if given:
                raise UsageError(
                    f"{', '.join(given)} only apply to an import (--import or --uri)"
                    + (", or --store to an upload (--file)" if "--store" in given else "")
                )
        return method

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        method = self._method(parsed_args)
        _check_wait(parsed_args)
        fields = image_changes(parsed_args)
        fields.pop("name", None)
        if parsed_args.tag:
            fields["tags"] = list(parsed_args.tag)
        image = self.client.create_image(name=parsed_args.name, **fields)
        ref = image.id
        self.glimpse.image_ref = ref
        if method is None:
            if parsed_args.file is not None:
                send_file(
                    self.client, self.console, image, parsed_args.file, stage=False, store=parsed_args.store
                )
                image = self.client.get_image(image.id)
            return image_fields(image)
        if method == "glance-direct":
            send_file(self.client, self.console, image, parsed_args.file, stage=True)
        self.exit_code, image = start_import(self, image, ref, method, parsed_args)
        return image_fields(image)


class ImportImage(GlimpseShowOne):
    """Import data into an existing image (glance-direct after stage, web-download, copy-image,
    glance-download)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        parser.add_argument("--method", required=True, choices=IMPORT_METHODS, help="import method")
        parser.add_argument("--uri", metavar="URL", help="where web-download fetches the data")
        parser.add_argument(
            "--remote-image", metavar="ID", help="glance-download: the image's ID in the other region"
        )
        parser.add_argument(
            "--remote-region", metavar="REGION", help="glance-download: the region to import from"
        )
        parser.add_argument(
            "--remote-interface",
            metavar="INTERFACE",
            help="glance-download: the catalog interface of that region's image service (default public)",
        )
        add_target_options(parser, copying=False)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        if parsed_args.method == "web-download" and not parsed_args.uri:
            raise UsageError("--method web-download needs --uri")
        if parsed_args.method != "web-download" and parsed_args.uri:
            raise UsageError("--uri only applies to --method web-download")
        remote_options = (parsed_args.remote_image, parsed_args.remote_region, parsed_args.remote_interface)
        if parsed_args.method == "glance-download":
            if not (parsed_args.remote_image and parsed_args.remote_region):
                raise UsageError("--method glance-download needs --remote-image and --remote-region")
        elif any(option is not None for option in remote_options):
            raise UsageError(
                "--remote-image, --remote-region and --remote-interface only apply to glance-download"
            )
        if parsed_args.method == "copy-image" and parsed_args.checksum:
            raise UsageError(
                "--checksum does not apply to copy-image (a copy checks the image's own checksums)"
            )
        _check_wait(parsed_args)
        image = self.image(parsed_args.image)
        self.exit_code, image = start_import(self, image, parsed_args.image, parsed_args.method, parsed_args)
        return image_fields(image)


class CopyImage(GlimpseShowOne):
    """Copy an active image's data to more stores (copy-image; admin by default)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        add_target_options(parser, copying=True)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        _check_wait(parsed_args)
        image = self.image(parsed_args.image)
        self.exit_code, image = start_import(self, image, parsed_args.image, "copy-image", parsed_args)
        return image_fields(image)
