"""The format inspection in the hashing pass (``glimpse.streaming``), on real qemu-img images: the
same verdict whatever the block sizes, early refusal, and no second read of the data."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from glimpse.domain.inspection import ContentRules, ContentVerdict, content_judge
from glimpse.errors import FormatMismatch, GlimpseError, UnsafeImage
from glimpse.streaming import ContentInspector, StreamHasher

MIB = 1024 * 1024
CASES = [
    ("raw.img", "raw", "raw", 4 * MIB),
    ("qcow2.img", "qcow2", "qcow2", 4 * MIB),
    ("vmdk.img", "vmdk", "vmdk", 4 * MIB),
    ("vmdk-stream.img", "vmdk", "vmdk", 4 * MIB),
    ("vhd.img", "vhd", "vhd", 4212736),
    ("vhdx.img", "vhdx", "vhdx", 4 * MIB),
    ("vdi.img", "vdi", "vdi", 4 * MIB),
    ("iso.iso", "iso", "iso", None),
]


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def hash_and_inspect(data: bytes, disk_format: str, piece: int) -> tuple[StreamHasher, ContentVerdict]:
    inspector = ContentInspector(content_judge(disk_format, ContentRules()))
    hasher = StreamHasher("sha256", inspector)
    async for _ in hasher.wrap(pieces(data, piece)):
        pass
    assert inspector.verdict is not None
    return hasher, inspector.verdict


# 64 MiB: the whole image in one piece (a chunk of a block or more passes the hashing as it is).
@pytest.mark.parametrize("piece", [4096, 1_250_000, 3 * MIB + 17, 64 * MIB])
@pytest.mark.parametrize(("name", "disk_format", "detected", "virtual_size"), CASES)
def test_every_format_whatever_the_chunk_size(
    disk_images: Path, name: str, disk_format: str, detected: str, virtual_size: int | None, piece: int
) -> None:
    data = (disk_images / name).read_bytes()
    hasher, verdict = asyncio.run(hash_and_inspect(data, disk_format, piece))
    assert verdict.detected == detected
    assert verdict.virtual_size == (virtual_size or len(data))
    assert hasher.size == len(data)
    assert hasher.multihash == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("name", "disk_format", "error", "check"),
    [
        ("qcow2-backing.img", "qcow2", UnsafeImage, "qcow2/backing_file"),
        ("qcow2-datafile.img", "qcow2", UnsafeImage, "qcow2/data_file"),
        ("vmdk-flat-passwd.vmdk", "vmdk", UnsafeImage, "vmdk/descriptor"),
        ("qcow2.img", "raw", FormatMismatch, None),
        ("vmdk-flat-passwd.vmdk", "raw", FormatMismatch, None),
    ],
)
def test_refused_images(
    disk_images: Path, name: str, disk_format: str, error: type[GlimpseError], check: str | None
) -> None:
    with pytest.raises(error) as caught:
        asyncio.run(hash_and_inspect((disk_images / name).read_bytes(), disk_format, 64 * 1024))
    if check is not None:
        assert isinstance(caught.value, UnsafeImage)
        assert caught.value.check == check


def test_a_refusal_comes_with_the_first_blocks(disk_images: Path) -> None:
    """A 64 MiB qcow2 declared raw: the stream is refused after about a block, not read to its end."""
    header = (disk_images / "qcow2.img").read_bytes()
    pulled = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        for block in [header] + [bytes(MIB)] * 64:
            pulled += len(block)
            yield block

    async def consume() -> None:
        hasher = StreamHasher("sha256", ContentInspector(content_judge("raw", ContentRules())))
        async for _ in hasher.wrap(source()):
            pass

    with pytest.raises(FormatMismatch):
        asyncio.run(consume())
    assert pulled <= 3 * MIB


def test_inspection_stops_reading_once_every_format_has_decided(disk_images: Path) -> None:
    """After the headers nothing is fed to the inspectors any more (a streamOptimized VMDK, which
    keeps its footer at the end, is the exception)."""
    data = (disk_images / "qcow2.img").read_bytes() + bytes(8 * MIB)
    inspector = ContentInspector(content_judge("qcow2", ContentRules()))
    fed = 0
    for start in range(0, len(data), MIB):
        if inspector.needs_data:
            inspector.feed(data[start : start + MIB])
            fed += 1
    assert fed <= 2
    assert inspector.finish(len(data)).virtual_size == 4 * MIB
