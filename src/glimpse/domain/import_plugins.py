"""The import plugins: the steps that transform staged image data before it is copied to the stores.

Glance's names and option (``[image_import_opts] image_import_plugins``, a list, empty by default):
the plugins run, in the configured order, on the staged data of glance-direct and web-download
imports (after the download), never for copy-image. What each one decides is here, pure; the jobs
layer (``glimpse.jobs.decompress_step``, ``glimpse.jobs.convert_step``) moves the bytes and runs
``qemu-img``.

* ``image_decompression``: data whose first bytes are a gzip, bzip2, xz, zstd or zip header is
  replaced by its decompressed content; the image's ``disk_format`` is not changed.
* ``image_conversion``: data in another disk format than ``[image_conversion] output_format``
  (default ``raw``) is converted with ``qemu-img convert`` from the format the inspection found,
  and the image's ``disk_format`` becomes the output format.
* ``no_op``: does nothing (Glance's example plugin).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from glimpse.errors import ConfigError


class ImportPlugin(enum.StrEnum):
    IMAGE_CONVERSION = "image_conversion"
    IMAGE_DECOMPRESSION = "image_decompression"
    NO_OP = "no_op"


#: Glance plugins Glimpse does not run (yet); named in the error that refuses them.
NOT_SUPPORTED: Final = frozenset({"inject_image_metadata"})

#: The output formats ``[image_conversion] output_format`` may name (Glance's choices).
OUTPUT_FORMATS: Final = ("raw", "qcow2", "vmdk")


def parse_plugins(names: Iterable[str], option: str) -> tuple[ImportPlugin, ...]:
    """The configured plugin names, in order, checked: an unknown name or a repeated one is refused."""
    plugins: list[ImportPlugin] = []
    valid = ", ".join(ImportPlugin)
    for name in names:
        if name in NOT_SUPPORTED:
            raise ConfigError(
                f"{option}: the plugin {name!r} is not supported by Glimpse; the plugins are {valid}."
            )
        try:
            plugin = ImportPlugin(name)
        except ValueError:
            raise ConfigError(f"{option}: unknown plugin {name!r}; the plugins are {valid}.") from None
        if plugin in plugins:
            raise ConfigError(f"{option} lists the plugin {name!r} twice.")
        plugins.append(plugin)
    return tuple(plugins)


def parse_output_format(value: str, option: str) -> str:
    if value not in OUTPUT_FORMATS:
        raise ConfigError(
            f"{option} = {value!r} is not supported; choose one of {', '.join(OUTPUT_FORMATS)}."
        )
    return value


# -- decompression -------------------------------------------------------------------------------


class Compression(enum.StrEnum):
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"
    ZIP = "zip"


#: The first bytes of each compressed format (zstd: a frame's magic number, little-endian).
_MAGIC: Final = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"PK\x03\x04", Compression.ZIP),
)
#: How many leading bytes :func:`detect_compression` needs.
MAGIC_LENGTH: Final = max(len(magic) for magic, _ in _MAGIC)


def detect_compression(head: bytes) -> Compression | None:
    """The compression whose header ``head`` (the first bytes of the data) starts with, if any."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


# -- conversion ----------------------------------------------------------------------------------

#: The program ``image_conversion`` runs (Debian package ``qemu-utils``), looked up on the PATH.
QEMU_IMG: Final = "qemu-img"
#: Disk formats under qemu-img's names where they differ.
_QEMU_NAMES: Final = {"vhd": "vpc"}
#: Detected formats ``qemu-img convert -f`` can read (``gpt`` is a partitioned raw disk).
_CONVERTIBLE: Final = frozenset({"raw", "gpt", "qcow2", "vmdk", "vhd", "vhdx", "vdi"})


def qemu_format(disk_format: str) -> str:
    """The name qemu-img gives a disk format (``vhd`` is ``vpc``)."""
    return _QEMU_NAMES.get(disk_format, disk_format)


@dataclass(frozen=True, slots=True)
class ConversionPlan:
    """What ``qemu-img convert`` is to do: read ``source`` (qemu-img's name), write ``output``."""

    source: str
    output: str


def plan_conversion(detected: str, output_format: str) -> ConversionPlan | None:
    """Whether data the inspection found to be ``detected`` (``qcow2``, ``raw``, ``iso+gpt``...)
    needs converting to ``output_format``: None when it already is that format, or is an ISO image
    (left as it is, like Glance). Raises ``ValueError`` for data qemu-img is not to read."""
    source = "raw" if detected == "gpt" else detected
    if source == output_format or "iso" in source.split("+"):
        return None
    if source not in _CONVERTIBLE:
        raise ValueError(f"data detected as {detected} cannot be converted")
    return ConversionPlan(source=qemu_format(source), output=qemu_format(output_format))


_PERCENT = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


def qemu_percent(text: str) -> float | None:
    """The last percentage in ``qemu-img convert -p`` output (``    (42.01/100%)``), if any."""
    found = _PERCENT.findall(text)
    if not found:
        return None
    return min(100.0, round(float(found[-1]), 1))


# -- the staged objects the plugins write --------------------------------------------------------

_DERIVED: Final = re.compile(r"(?P<image>[0-9a-f-]{36})\.(?P<task>[0-9a-f-]{36})\.(?P<plugin>[a-z_]+)")


def derived_key(image_id: str, task_id: str, plugin: ImportPlugin) -> str:
    """The staging key of the data ``plugin`` made for ``image_id`` in task ``task_id``.

    The original staged data stays under the image id until the import ends, so a task handed back
    to the queue (the runner stopping) starts again from it; each task's objects are its own.
    """
    return f"{image_id}.{task_id}.{plugin}"


def derived_owner(key: str) -> tuple[str, str] | None:
    """The (image id, task id) of a staging key made by :func:`derived_key`; None for other keys."""
    match = _DERIVED.fullmatch(key)
    if match is None or match.group("plugin") not in set(ImportPlugin):
        return None
    return match.group("image"), match.group("task")
