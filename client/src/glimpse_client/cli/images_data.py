"""``glimpse image upload|download|stage``: image data with a progress bar."""

from __future__ import annotations

import argparse
import hashlib
import shlex
from pathlib import Path

from rich.console import Console

from glimpse_client import Client, Image
from glimpse_client._data import content_digest

from ._text import human_size
from .base import GlimpseCommand
from .errors import CommandError, UsageError
from .progress import TransferProgress

_READ = 1024 * 1024


def readable_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def send_file(
    client: Client,
    console: Console,
    image: Image,
    path: Path,
    *,
    stage: bool,
    store: str | None = None,
    checksum: str | None = None,
) -> None:
    """Upload (``PUT /file``, into ``store`` if given) or stage (``PUT /stage``) ``path`` with a bar;
    with ``checksum``, the server keeps the data only if it has that digest."""
    if checksum is not None:
        try:
            content_digest(checksum)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    verb = "staging" if stage else "uploading"
    with TransferProgress(console, f"{verb} {path.name}", total=path.stat().st_size) as bar:
        if stage:
            client.stage(image.id, path, on_progress=bar, checksum=checksum)
        else:
            client.upload(image.id, path, on_progress=bar, store=store, checksum=checksum)


def add_checksum_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checksum",
        metavar="ALGORITHM:HEX",
        help="the digest the data must have, sha256:HEX or sha512:HEX, sent as Content-Digest (the "
        "server refuses data with another digest and keeps nothing)",
    )


class UploadImage(GlimpseCommand):
    """Upload image data (PUT /v2/images/ID/file) with a progress bar."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID (status queued)")
        parser.add_argument(
            "--file", required=True, type=readable_file, metavar="FILE", help="data to upload"
        )
        parser.add_argument(
            "--store", metavar="STORE", help="the store to upload to (default: the server's default store)"
        )
        add_checksum_option(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        image = self.image(parsed_args.image)
        send_file(
            self.client,
            self.console,
            image,
            parsed_args.file,
            stage=False,
            store=parsed_args.store,
            checksum=parsed_args.checksum,
        )
        return 0


class StageImage(GlimpseCommand):
    """Stage image data for a glance-direct import (PUT /v2/images/ID/stage) with a progress bar."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID (status queued)")
        parser.add_argument("--file", required=True, type=readable_file, metavar="FILE", help="data to stage")
        add_checksum_option(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        image = self.image(parsed_args.image)
        send_file(
            self.client, self.console, image, parsed_args.file, stage=True, checksum=parsed_args.checksum
        )
        self.say(
            f"Staged. Import it with: {self.glimpse.PROG} image import {shlex.quote(parsed_args.image)} "
            "--method glance-direct --wait"
        )
        return 0


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while block := handle.read(_READ):
            digest.update(block)
    return digest.hexdigest()


def verify(image: Image, path: Path) -> str | None:
    """Compare the file with the image's multihash (or MD5 checksum); the algorithm used, if any."""
    if image.os_hash_algo and image.os_hash_value and image.os_hash_algo in hashlib.algorithms_available:
        algorithm, expected = image.os_hash_algo, image.os_hash_value
    elif image.checksum:
        algorithm, expected = "md5", image.checksum
    else:
        return None
    if _digest(path, algorithm) != expected:
        raise CommandError(
            f"{path} does not match the image's {algorithm} ({expected[:16]}…): if it held other data "
            "before the download resumed, remove it and download again"
        )
    return algorithm


class DownloadImage(GlimpseCommand):
    """Download image data into a file, resuming a partial file, with a progress bar."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        parser.add_argument(
            "--file", required=True, type=Path, metavar="FILE", help="where to write the data"
        )
        parser.add_argument(
            "--no-resume",
            action="store_true",
            help="start from the beginning even if FILE already holds part of the data",
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        image = self.image(parsed_args.image)
        target: Path = parsed_args.file
        if parsed_args.no_resume and target.exists():
            target.write_bytes(b"")
        offset = target.stat().st_size if target.exists() else 0
        if offset:
            self.say(f"resuming {target} from {human_size(offset)}")
        with TransferProgress(self.console, f"downloading {image.name or image.id}", total=image.size) as bar:
            bar(offset, image.size)
            self.client.download(image.id, target, on_progress=bar)
        algorithm = verify(image, target)
        if algorithm:
            self.say(f"{target}: {algorithm} matches the image")
        return 0
