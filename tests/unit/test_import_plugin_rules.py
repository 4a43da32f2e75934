"""The import plugins' rules (pure) and options: plugin names and order, compression magic, when a
conversion is needed, qemu-img's progress output, the staging keys of the plugins' output."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest
import zstandard

from glimpse.config import load_settings
from glimpse.domain.import_plugins import (
    Compression,
    ConversionPlan,
    ImportPlugin,
    derived_key,
    derived_owner,
    detect_compression,
    plan_conversion,
    qemu_percent,
)
from glimpse.domain.imports import ImportMethod
from glimpse.domain.tasks import TaskProgress, copied_message
from glimpse.errors import ConfigError
from glimpse.jobs.flows import steps_for
from glimpse.runtime import check_tools

IMAGE = "4f5c2d1e-0000-4000-8000-000000000001"
TASK = "9a8b7c6d-0000-4000-8000-000000000002"


def settings(tmp_path: Path, **environ: str):  # type: ignore[no-untyped-def]
    return load_settings(environ={"GLIMPSE_DATA_DIR": str(tmp_path), **environ})


def test_plugins_are_off_by_default_and_keep_their_order(tmp_path: Path) -> None:
    assert settings(tmp_path).import_plugins == ()
    assert settings(tmp_path).conversion_output_format == "raw"
    configured = settings(
        tmp_path,
        GLIMPSE_IMAGE_IMPORT_OPTS__IMAGE_IMPORT_PLUGINS="['image_decompression', 'no_op', "
        "'image_conversion']",
        GLIMPSE_IMAGE_CONVERSION__OUTPUT_FORMAT="qcow2",
    )
    assert configured.import_plugins == (
        ImportPlugin.IMAGE_DECOMPRESSION,
        ImportPlugin.NO_OP,
        ImportPlugin.IMAGE_CONVERSION,
    )
    assert configured.conversion_output_format == "qcow2"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (
            "image_conversion, bogus",
            "unknown plugin 'bogus'; the plugins are image_conversion, image_decompression, no_op",
        ),
        ("inject_image_metadata", "the plugin 'inject_image_metadata' is not supported by Glimpse"),
        ("no_op, no_op", "lists the plugin 'no_op' twice"),
    ],
)
def test_bad_plugin_lists_are_refused_at_start(tmp_path: Path, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, GLIMPSE_IMAGE_IMPORT_OPTS__IMAGE_IMPORT_PLUGINS=value)
    assert caught.value.message.startswith("[image_import_opts] image_import_plugins")
    assert words in caught.value.message


def test_an_unknown_output_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="output_format = 'vhd' is not supported; choose one of raw, qcow2, vmdk"
    ):
        settings(tmp_path, GLIMPSE_IMAGE_CONVERSION__OUTPUT_FORMAT="vhd")


def test_conversion_needs_qemu_img_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = settings(tmp_path, GLIMPSE_IMAGE_IMPORT_OPTS__IMAGE_IMPORT_PLUGINS="image_conversion")
    monkeypatch.setenv("PATH", str(tmp_path))  # a directory without qemu-img
    with pytest.raises(ConfigError, match="apt-get install qemu-utils"):
        check_tools(configured)
    check_tools(settings(tmp_path, GLIMPSE_IMAGE_IMPORT_OPTS__IMAGE_IMPORT_PLUGINS="image_decompression"))


def test_the_plugins_run_between_the_data_and_the_stores() -> None:
    plugins = (ImportPlugin.IMAGE_DECOMPRESSION, ImportPlugin.IMAGE_CONVERSION)
    names = {method: [step.name for step in steps_for(method, plugins)] for method in ImportMethod}
    assert names[ImportMethod.GLANCE_DIRECT] == [
        "begin",
        "image_decompression",
        "image_conversion",
        "copy",
        "complete",
    ]
    assert names[ImportMethod.WEB_DOWNLOAD] == [
        "begin",
        "download",
        "image_decompression",
        "image_conversion",
        "copy",
        "complete",
    ]
    assert names[ImportMethod.COPY_IMAGE] == ["begin", "copy", "complete"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (gzip.compress(b"disk", mtime=0), Compression.GZIP),
        (bz2.compress(b"disk"), Compression.BZIP2),
        (lzma.compress(b"disk"), Compression.XZ),
        (zstandard.ZstdCompressor().compress(b"disk"), Compression.ZSTD),
        (b"PK\x03\x04rest", Compression.ZIP),
        (b"QFI\xfb\x00\x00\x00\x03", None),
        (b"", None),
        (b"\x1f", None),
    ],
    ids=["gzip", "bzip2", "xz", "zstd", "zip", "qcow2", "empty", "one-byte"],
)
def test_compression_is_recognised_by_its_first_bytes(data: bytes, kind: Compression | None) -> None:
    assert detect_compression(data[:6]) == kind


@pytest.mark.parametrize(
    ("detected", "output", "plan"),
    [
        ("qcow2", "raw", ConversionPlan("qcow2", "raw")),
        ("vmdk", "raw", ConversionPlan("vmdk", "raw")),
        ("vhd", "qcow2", ConversionPlan("vpc", "qcow2")),
        ("raw", "qcow2", ConversionPlan("raw", "qcow2")),
        ("gpt", "vmdk", ConversionPlan("raw", "vmdk")),
        ("raw", "raw", None),
        ("gpt", "raw", None),
        ("qcow2", "qcow2", None),
        ("iso", "raw", None),
        ("iso+gpt", "qcow2", None),
    ],
)
def test_when_data_is_converted(detected: str, output: str, plan: ConversionPlan | None) -> None:
    assert plan_conversion(detected, output) == plan


def test_data_qemu_img_must_not_read_is_not_converted() -> None:
    with pytest.raises(ValueError, match="data detected as luks cannot be converted"):
        plan_conversion("luks", "raw")


@pytest.mark.parametrize(
    ("output", "percent"),
    [
        ("    (0.00/100%)\r", 0.0),
        ("    (0.00/100%)\r    (1.01/100%)\r    (42.57/100%)\r", 42.6),
        ("    (100.00/100%)\n", 100.0),
        ("    (12.0", None),
        ("", None),
    ],
)
def test_qemu_img_progress_is_read(output: str, percent: float | None) -> None:
    assert qemu_percent(output) == percent


def test_plugin_output_keys_name_their_image_and_task() -> None:
    key = derived_key(IMAGE, TASK, ImportPlugin.IMAGE_CONVERSION)
    assert key == f"{IMAGE}.{TASK}.image_conversion"
    assert derived_owner(key) == (IMAGE, TASK)
    assert derived_owner(IMAGE) is None
    assert derived_owner(f"{IMAGE}.{TASK}.something_else") is None


def test_the_progress_of_a_plugin_phase_round_trips() -> None:
    progress = TaskProgress(
        phase="converting",
        staged_bytes=3 * 1024 * 1024,
        percent=42.5,
        processed_bytes=10,
        plugins={"image_decompression": "done", "image_conversion": "running"},
    )
    assert TaskProgress.from_dict(progress.to_dict()) == progress
    assert copied_message(progress) == "Copied 3 MiB"  # what was downloaded, while a plugin works
    older = TaskProgress.from_dict({"phase": "stores", "staged_bytes": 0, "stores": {}})
    assert (older.percent, older.processed_bytes, older.plugins) == (None, 0, {})
