"""The import plugins (``[image_import_opts] image_import_plugins``) end to end, with real images
made by qemu-img, the real qemu-img converting them and the standard library's and zstandard's
compressors: image_conversion (qcow2 → raw, vmdk → raw), image_decompression (gzip, bzip2, xz,
zstd, zip), their order, a decompression bomb, a conversion qemu-img refuses, and the progress of
each step as ``GET /v2/images/{id}/tasks`` shows it."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import hashlib
import io
import lzma
import struct
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from starlette.testclient import TestClient
from test_runner_support import (
    MIB,
    STORES,
    WebServer,
    WrappedStore,
    create_image,
    image_of,
    make_runtime,
    payload,
    run_all,
    serve,
    stage,
    staged_files,
    start_import,
    store_files,
    stored_bytes,
    task_of,
    wait_for,
)

from glimpse.api.app import create_app
from glimpse.domain.images import ImageStatus
from glimpse.domain.import_plugins import ImportPlugin
from glimpse.domain.tasks import TaskStatus
from glimpse.errors import FormatMismatch
from glimpse.jobs.housekeeping import sweep_staging
from glimpse.jobs.runner import TaskRunner
from glimpse.ports import ImageStore, StoredObject
from glimpse.runtime import Runtime
from glimpse.storage.registry import STAGING_STORE_ID

MIB4 = 4 * 1024 * 1024
CONVERSION = (ImportPlugin.IMAGE_CONVERSION,)
DECOMPRESSION = (ImportPlugin.IMAGE_DECOMPRESSION,)
HEADERS = {
    "X-Project-Id": "project-a",
    "X-User-Id": "user-a",
    "X-Roles": "member,reader",
    "Accept": "application/json",
}

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def zipped(data: bytes, name: str = "disk.img") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def broken_qcow2(disk_images: Path) -> bytes:
    """qcow2.img with its first L1 entry pointing at an unaligned L2 table: the header (all that
    the format inspection reads) is intact, but qemu-img refuses to read the data."""
    data = bytearray((disk_images / "qcow2.img").read_bytes())
    (l1_offset,) = struct.unpack(">Q", data[40:48])
    (entry,) = struct.unpack(">Q", data[l1_offset : l1_offset + 8])
    assert entry, "the test image's first L1 entry should point at an L2 table"
    data[l1_offset : l1_offset + 8] = struct.pack(">Q", entry + 0x200)
    return bytes(data)


def assert_active(runtime: Runtime, image_id: str, task_id: str, data: bytes, disk_format: str) -> None:
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.SUCCESS, task.message
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.disk_format == disk_format
    assert image.size == len(data)
    assert image.checksum == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert image.os_hash_value == hashlib.sha512(data).hexdigest()
    for store in image.stores:
        assert stored_bytes(runtime, store, image_id) == data
    assert staged_files(runtime) == []  # the staged data, the plugins' output and scratch files


def assert_reverted(runtime: Runtime, image_id: str, task_id: str, disk_format: str, words: str) -> str:
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert words in task.message, task.message
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.disk_format == disk_format
    assert image.import_task_id is None
    assert (image.size, image.checksum) == (None, None)
    for store in STORES:
        assert store_files(runtime, store) == []
    assert staged_files(runtime) == []
    return task.message


def glance_direct(runtime: Runtime, data: bytes, disk_format: str, **body: Any) -> tuple[str, str]:
    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format=disk_format)
        await stage(runtime, image_id, data)
        task_id = await start_import(runtime, image_id, {"method": {"name": "glance-direct"}, **body})
        await run_all(runtime)
        return image_id, task_id

    return asyncio.run(scenario())


@pytest.fixture
def web(disk_images: Path) -> Iterator[WebServer]:
    files = {"/vmdk.img": (disk_images / "vmdk.img").read_bytes()}
    files["/qcow2.img.xz"] = lzma.compress((disk_images / "qcow2.img").read_bytes())
    files["/qcow2-backing.img"] = (disk_images / "qcow2-backing.img").read_bytes()
    yield from serve(files)


# -- conversion --------------------------------------------------------------------------------------


class HoldingStaging(WrappedStore):
    """The staging store, holding the converted data back until the test has seen the task's
    progress (the conversion itself is real; only the moment it is handed on waits)."""

    def __init__(self, inner: ImageStore) -> None:
        super().__init__(inner)
        self.release = threading.Event()

    async def adopt(self, path: str, key: str) -> StoredObject:
        await asyncio.to_thread(self.release.wait, 20)
        result: StoredObject = await self.inner.adopt(path, key)  # type: ignore[attr-defined]
        return result


def test_qcow2_is_converted_to_raw_with_its_progress_in_the_tasks_api(
    tmp_path: Path, migrated_database_url: str, disk_images: Path
) -> None:
    holding: list[HoldingStaging] = []

    def hold(store: ImageStore) -> ImageStore:
        holding.append(HoldingStaging(store))
        return holding[0]

    runtime = make_runtime(
        tmp_path, migrated_database_url, wrap={STAGING_STORE_ID: hold}, import_plugins=CONVERSION
    )
    raw = (disk_images / "raw.img").read_bytes()
    with TestClient(create_app(runtime), headers=HEADERS) as client:
        image_id = client.post(
            "/v2/images", json={"name": "q", "disk_format": "qcow2", "container_format": "bare"}
        ).json()["id"]
        staged = client.put(
            f"/v2/images/{image_id}/stage",
            content=(disk_images / "qcow2.img").read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert staged.status_code == 204, staged.text
        accepted = client.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
        assert accepted.status_code == 202, accepted.text
        deadline = time.monotonic() + 20
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
            seen = tasks[0].get("progress") or {}
            if seen.get("phase") == "converting":
                break
            time.sleep(0.02)
        holding[0].release.set()
        assert seen.get("phase") == "converting", seen
        assert isinstance(seen["percent"], float)
        assert 0.0 <= seen["percent"] <= 100.0
        assert seen["plugins"] == {"image_conversion": "running"}
        image = client.get(f"/v2/images/{image_id}").json()
        assert (image["status"], image["disk_format"]) == ("importing", "qcow2")
        while time.monotonic() < deadline and image["status"] == "importing":
            time.sleep(0.02)
            image = client.get(f"/v2/images/{image_id}").json()
        assert image["status"] == "active"
        assert image["disk_format"] == "raw"
        assert (image["size"], image["virtual_size"]) == (MIB4, MIB4)
        assert image["checksum"] == hashlib.md5(raw, usedforsecurity=False).hexdigest()
        assert image["os_hash_value"] == hashlib.sha512(raw).hexdigest()
        task = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"][0]
        assert task["status"] == "success"
        assert task["progress"]["phase"] == "done"
        assert task["progress"]["plugins"] == {"image_conversion": "done"}
        assert client.get(f"/v2/images/{image_id}/file").content == raw
    assert staged_files(runtime) == []
    runtime.close()


def test_vmdk_from_web_download_is_converted_to_raw(
    tmp_path: Path, migrated_sqlite_url: str, web: WebServer, disk_images: Path
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_sqlite_url, environ=web.filter_environ, import_plugins=CONVERSION
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format="vmdk")
        uri = web.url("/vmdk.img")
        task_id = await start_import(runtime, image_id, {"method": {"name": "web-download", "uri": uri}})
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_active(runtime, image_id, task_id, (disk_images / "raw.img").read_bytes(), "raw")
    assert image_of(runtime, image_id).virtual_size == MIB4
    runtime.close()


def test_data_already_in_the_output_format_is_not_converted(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_sqlite_url, import_plugins=CONVERSION, conversion_output_format="qcow2"
    )
    data = (disk_images / "qcow2.img").read_bytes()
    image_id, task_id = glance_direct(runtime, data, "qcow2")
    assert_active(runtime, image_id, task_id, data, "qcow2")
    assert task_of(runtime, task_id).progress.plugins == {"image_conversion": "skipped"}
    runtime.close()


def qemu_img_running(directory: Path) -> bool:
    """Whether a qemu-img process works on a file of ``directory``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            command
            and command[0].endswith(b"qemu-img")
            and any(str(directory).encode() in a for a in command)
        ):
            return True
    return False


def test_a_stopping_runner_kills_qemu_img_and_the_next_run_converts_from_the_staged_data(
    tmp_path: Path, migrated_sqlite_url: str
) -> None:
    """8 MiB of data converted at 1 MiB/s: the runner stops while qemu-img works; qemu-img is
    killed, its scratch file removed, the task handed back with the staged data as it was; a
    runner without the rate limit then finishes it."""
    raw = payload(8 * MIB, seed=11)
    (tmp_path / "disk.raw").write_bytes(raw)
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            str(tmp_path / "disk.raw"),
            str(tmp_path / "disk.qcow2"),
        ],
        check=True,
    )
    qcow2 = (tmp_path / "disk.qcow2").read_bytes()
    runtime = make_runtime(
        tmp_path, migrated_sqlite_url, import_plugins=CONVERSION, conversion_rate_limit=1024 * 1024
    )
    staging_dir = runtime.settings.staging.datadir

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format="qcow2")
        await stage(runtime, image_id, qcow2)
        task_id = await start_import(runtime, image_id, {"method": {"name": "glance-direct"}})
        runner = TaskRunner(runtime, "stopping-runner")
        job = asyncio.create_task(runner.run())
        # qemu-img is seen running before it has created its output: wait for both.
        await wait_for(
            lambda: (
                task_of(runtime, task_id).progress.phase == "converting"
                and qemu_img_running(staging_dir)
                and any(name.endswith(".scratch") for name in staged_files(runtime))
            ),
            what="qemu-img converting into its scratch file",
        )
        runner.request_stop()
        await asyncio.wait_for(job, 10)
        assert runner.finished[task_id] == "requeued"
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert not qemu_img_running(staging_dir)
    assert staged_files(runtime) == [image_id]  # no scratch file, no output: the data as staged
    image = image_of(runtime, image_id)
    assert (image.status, image.disk_format, image.import_task_id) == (
        ImageStatus.IMPORTING,
        "qcow2",
        task_id,
    )
    assert task_of(runtime, task_id).status == TaskStatus.PENDING

    unlimited = Runtime.build(runtime.settings.with_overrides(conversion_rate_limit=0), stores=runtime.stores)
    runner = asyncio.run(run_all(unlimited, "next-runner"))
    assert runner.finished == {task_id: "success"}
    assert_active(unlimited, image_id, task_id, raw, "raw")
    unlimited.close()
    runtime.close()


def test_a_conversion_qemu_img_refuses_reverts_the_image_to_queued(
    tmp_path: Path, migrated_database_url: str, disk_images: Path
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, import_plugins=CONVERSION)
    image_id, task_id = glance_direct(runtime, broken_qcow2(disk_images), "qcow2")
    message = assert_reverted(
        runtime,
        image_id,
        task_id,
        "qcow2",
        "The import plugin image_conversion failed: qemu-img convert from qcow2 to raw exited with status 1:",
    )
    assert "stage the data again and import it again" in message
    assert str(runtime.settings.staging.datadir) not in message  # no machine paths in task messages
    task = task_of(runtime, task_id)
    assert task.progress.plugins == {"image_conversion": "failed"}
    runtime.close()


def test_an_unsafe_image_is_not_converted(tmp_path: Path, migrated_sqlite_url: str, web: WebServer) -> None:
    """web-download stages what it downloads as it is; the conversion inspects it first and
    refuses a qcow2 with a backing file (qemu-img would read the host's file)."""
    runtime = make_runtime(
        tmp_path, migrated_sqlite_url, environ=web.filter_environ, import_plugins=CONVERSION
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format="qcow2")
        uri = web.url("/qcow2-backing.img")
        task_id = await start_import(runtime, image_id, {"method": {"name": "web-download", "uri": uri}})
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_reverted(
        runtime,
        image_id,
        task_id,
        "qcow2",
        "so it was not converted: The image data is qcow2 and fails its safety check 'backing_file'",
    )
    runtime.close()


# -- decompression -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd", "zip"])
def test_each_compression_is_undone_and_the_disk_format_kept(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path, kind: str
) -> None:
    runtime = make_runtime(tmp_path, migrated_sqlite_url, import_plugins=DECOMPRESSION)
    data = (disk_images / "qcow2.img").read_bytes()
    packed = zipped(data) if kind == "zip" else COMPRESSORS[kind](data)
    image_id, task_id = glance_direct(runtime, packed, "qcow2")
    assert_active(runtime, image_id, task_id, data, "qcow2")
    assert image_of(runtime, image_id).virtual_size == MIB4
    progress = task_of(runtime, task_id).progress
    assert progress.plugins == {"image_decompression": "done"}
    runtime.close()


def test_staging_takes_compressed_data_only_with_the_plugin(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    packed = gzip.compress((disk_images / "qcow2.img").read_bytes())
    without = make_runtime(tmp_path / "without", migrated_sqlite_url)

    async def refused() -> None:
        image_id = create_image(without, disk_format="qcow2")
        with pytest.raises(
            FormatMismatch, match="The image data is raw, but the image's disk_format is qcow2"
        ):
            await stage(without, image_id, packed)

    asyncio.run(refused())
    without.close()


def test_validation_data_is_checked_on_the_data_as_staged(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    plugins = (ImportPlugin.IMAGE_DECOMPRESSION, ImportPlugin.IMAGE_CONVERSION)
    packed = bz2.compress((disk_images / "qcow2.img").read_bytes())
    right = {"os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(packed).hexdigest()}
    runtime = make_runtime(tmp_path / "right", migrated_sqlite_url, import_plugins=plugins)
    image_id, task_id = glance_direct(runtime, packed, "qcow2", validation_data=right)
    assert_active(runtime, image_id, task_id, (disk_images / "raw.img").read_bytes(), "raw")
    runtime.close()
    wrong = {"os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(b"other").hexdigest()}
    runtime = make_runtime(tmp_path / "wrong", migrated_sqlite_url, import_plugins=plugins)
    image_id, task_id = glance_direct(runtime, packed, "qcow2", validation_data=wrong)
    assert_reverted(
        runtime, image_id, task_id, "qcow2", f"but validation_data expects {wrong['os_hash_value']}"
    )
    runtime.close()


def test_uncompressed_data_passes_through(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    runtime = make_runtime(tmp_path, migrated_sqlite_url, import_plugins=DECOMPRESSION)
    data = (disk_images / "qcow2.img").read_bytes()
    image_id, task_id = glance_direct(runtime, data, "qcow2")
    assert_active(runtime, image_id, task_id, data, "qcow2")
    assert task_of(runtime, task_id).progress.plugins == {"image_decompression": "skipped"}
    runtime.close()


def test_a_decompression_bomb_fails_cleanly(tmp_path: Path, migrated_database_url: str) -> None:
    runtime = make_runtime(
        tmp_path, migrated_database_url, import_plugins=DECOMPRESSION, image_size_cap=8 * 1024 * 1024
    )
    bomb = gzip.compress(bytes(64 * 1024 * 1024))  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < 1024 * 1024
    image_id, task_id = glance_direct(runtime, bomb, "raw")
    assert_reverted(
        runtime, image_id, task_id, "raw", "the gzip data decompresses to more than 8388608 bytes"
    )
    runtime.close()


def test_damaged_compressed_data_fails_cleanly(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    runtime = make_runtime(tmp_path, migrated_sqlite_url, import_plugins=DECOMPRESSION)
    packed = lzma.compress((disk_images / "qcow2.img").read_bytes())
    image_id, task_id = glance_direct(runtime, packed[: len(packed) // 2], "qcow2")
    assert_reverted(runtime, image_id, task_id, "qcow2", "starts like xz data but cannot be decompressed")
    runtime.close()


# -- both, in the configured order -------------------------------------------------------------------


def test_decompression_then_conversion(
    tmp_path: Path, migrated_sqlite_url: str, web: WebServer, disk_images: Path
) -> None:
    runtime = make_runtime(
        tmp_path,
        migrated_sqlite_url,
        environ=web.filter_environ,
        import_plugins=(ImportPlugin.IMAGE_DECOMPRESSION, ImportPlugin.IMAGE_CONVERSION),
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format="qcow2")
        uri = web.url("/qcow2.img.xz")
        task_id = await start_import(runtime, image_id, {"method": {"name": "web-download", "uri": uri}})
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_active(runtime, image_id, task_id, (disk_images / "raw.img").read_bytes(), "raw")
    plugins = task_of(runtime, task_id).progress.plugins
    assert list(plugins.items()) == [("image_decompression", "done"), ("image_conversion", "done")]
    runtime.close()


def test_conversion_before_decompression_sees_compressed_data(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    runtime = make_runtime(
        tmp_path,
        migrated_sqlite_url,
        import_plugins=(ImportPlugin.IMAGE_CONVERSION, ImportPlugin.IMAGE_DECOMPRESSION),
    )
    packed = gzip.compress((disk_images / "qcow2.img").read_bytes())
    image_id, task_id = glance_direct(runtime, packed, "qcow2")
    assert_reverted(
        runtime,
        image_id,
        task_id,
        "qcow2",
        "image_conversion failed: the data was refused, so it was not converted: The image data is raw",
    )
    runtime.close()


def test_the_staging_sweep_removes_plugin_output_of_tasks_that_ended(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    """What a runner that died mid-step left behind: the output named for a task that no longer
    holds the image's lock goes; the staged data of a queued image stays."""
    runtime = make_runtime(tmp_path, migrated_sqlite_url)

    async def scenario() -> tuple[str, list[str]]:
        image_id = create_image(runtime, disk_format="qcow2")
        await stage(runtime, image_id, (disk_images / "qcow2.img").read_bytes())
        staging = runtime.stores.staging
        gone = "00000000-0000-4000-8000-000000000000"

        async def one() -> Any:
            yield b"left over"

        await staging.write(f"{image_id}.{gone}.image_conversion", one())
        return image_id, await sweep_staging(runtime)

    image_id, removed = asyncio.run(scenario())
    assert removed == [f"{image_id}.00000000-0000-4000-8000-000000000000.image_conversion"]
    assert staged_files(runtime) == [image_id]
    runtime.close()
