"""Content inspection in the import flows, with real qemu-img images: glance-direct and web-download
inspect the staged data while copying it to the stores, copy-image re-checks the image it copies. A
refusal fails the task naming the check, reverts the image, releases the lock and keeps nothing."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_runner_support import (
    ADMIN,
    STORES,
    WebServer,
    create_image,
    image_of,
    make_runtime,
    run_all,
    serve,
    stage,
    staged_files,
    start_import,
    store_files,
    task_of,
    upload,
)

from glimpse.domain.images import ImageStatus
from glimpse.domain.inspection import ContentRules
from glimpse.domain.tasks import TaskStatus
from glimpse.errors import UnsafeImage
from glimpse.runtime import Runtime

MIB4 = 4 * 1024 * 1024


@pytest.fixture
def web(disk_images: Path) -> Iterator[WebServer]:
    names = ("qcow2.img", "qcow2-backing.img", "vmdk-flat-passwd.vmdk", "vhdx.img")
    yield from serve({f"/{name}": (disk_images / name).read_bytes() for name in names})


def assert_refused(runtime: Runtime, image_id: str, task_id: str, words: str) -> None:
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert words in task.message
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.import_task_id is None  # the lock is released
    assert (image.size, image.virtual_size, image.checksum) == (None, None, None)
    for store in STORES:
        assert store_files(runtime, store) == []
    assert staged_files(runtime) == []


def test_staging_refuses_an_unsafe_image_at_once(
    tmp_path: Path, migrated_database_url: str, disk_images: Path
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url)

    async def scenario() -> str:
        image_id = create_image(runtime, disk_format="qcow2")
        with pytest.raises(UnsafeImage) as caught:
            await stage(runtime, image_id, (disk_images / "qcow2-backing.img").read_bytes())
        assert caught.value.check == "qcow2/backing_file"
        assert caught.value.message.endswith("Nothing was staged and the image is still queued.")
        return image_id

    image_id = asyncio.run(scenario())
    assert image_of(runtime, image_id).status == ImageStatus.QUEUED
    assert staged_files(runtime) == []
    runtime.close()


def test_glance_direct_re_checks_what_was_staged(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    """Data staged while the format match was not required (a qcow2 called raw) fails the import
    once it is: the task names the mismatch, the image is queued again, the staged data is gone."""
    loose = make_runtime(
        tmp_path, migrated_sqlite_url, content_rules=ContentRules(require_image_format_match=False)
    )
    strict = Runtime.build(loose.settings.with_overrides(content_rules=ContentRules()), stores=loose.stores)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(loose, disk_format="raw")
        await stage(loose, image_id, (disk_images / "qcow2.img").read_bytes())
        task_id = await start_import(
            strict, image_id, {"method": {"name": "glance-direct"}, "all_stores": True}
        )
        await run_all(strict)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_refused(strict, image_id, task_id, "The image data is qcow2, but the image's disk_format is raw")
    assert "The image data read from the staging area was refused, so it was not imported" in (
        task_of(strict, task_id).message
    )
    loose.close()
    strict.close()


@pytest.mark.parametrize(
    ("path", "disk_format", "words"),
    [
        ("/vmdk-flat-passwd.vmdk", "vmdk", "fails its safety check 'descriptor'"),
        ("/qcow2-backing.img", "qcow2", "fails its safety check 'backing_file'"),
        ("/vhdx.img", "qcow2", "The image data is vhdx, but the image's disk_format is qcow2"),
    ],
)
def test_web_download_refusals(
    tmp_path: Path, migrated_sqlite_url: str, web: WebServer, path: str, disk_format: str, words: str
) -> None:
    runtime = make_runtime(tmp_path, migrated_sqlite_url, environ=web.filter_environ)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format=disk_format)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "web-download", "uri": web.url(path)}}
        )
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_refused(runtime, image_id, task_id, words)
    runtime.close()


def test_web_download_of_a_qcow2_records_its_virtual_size(
    tmp_path: Path, migrated_database_url: str, web: WebServer, disk_images: Path
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=web.filter_environ)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format="qcow2")
        uri = web.url("/qcow2.img")
        task_id = await start_import(runtime, image_id, {"method": {"name": "web-download", "uri": uri}})
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert task_of(runtime, task_id).status == TaskStatus.SUCCESS
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.size == (disk_images / "qcow2.img").stat().st_size
    assert image.virtual_size == MIB4
    runtime.close()


def test_copy_image_re_checks_the_data_it_copies(
    tmp_path: Path, migrated_sqlite_url: str, disk_images: Path
) -> None:
    """An image that went in while the format match was not required (a qcow2 called raw) is not
    copied once it is; the image stays active in its store."""
    loose = make_runtime(
        tmp_path, migrated_sqlite_url, content_rules=ContentRules(require_image_format_match=False)
    )
    strict = Runtime.build(loose.settings.with_overrides(content_rules=ContentRules()), stores=loose.stores)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(loose, disk_format="raw")
        await upload(loose, image_id, (disk_images / "qcow2.img").read_bytes(), store="fast")
        task_id = await start_import(
            strict, image_id, {"method": {"name": "copy-image"}, "stores": ["cheap"]}, ADMIN
        )
        await run_all(strict)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(strict, task_id)
    assert task.status == TaskStatus.FAILURE
    assert (
        "was refused, so it was not copied: The image data is qcow2, but the image's disk_format is raw"
        in (task.message)
    )
    image = image_of(strict, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.stores == ["fast"]
    assert image.import_task_id is None
    assert store_files(strict, "cheap") == []
    loose.close()
    strict.close()


@pytest.mark.parametrize("algorithm", ["sha256", "md5", "sha512", "sha3_256"])
def test_web_download_with_the_right_digest(
    tmp_path: Path, migrated_sqlite_url: str, web: WebServer, disk_images: Path, algorithm: str
) -> None:
    runtime = make_runtime(tmp_path, migrated_sqlite_url, environ=web.filter_environ)
    digest = hashlib.new(algorithm, (disk_images / "qcow2.img").read_bytes()).hexdigest()

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format="qcow2")
        body = {
            "method": {"name": "web-download", "uri": web.url("/qcow2.img")},
            "validation_data": {"os_hash_algo": algorithm, "os_hash_value": digest},
        }
        task_id = await start_import(runtime, image_id, body)
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert task_of(runtime, task_id).status == TaskStatus.SUCCESS, task_of(runtime, task_id).message
    assert task_of(runtime, task_id).input["import_req"]["validation_data"]["os_hash_value"] == digest
    assert image_of(runtime, image_id).status == ImageStatus.ACTIVE
    runtime.close()


@pytest.mark.parametrize("method", ["web-download", "glance-direct"])
def test_a_digest_mismatch_fails_the_import_with_both_values(
    tmp_path: Path, migrated_database_url: str, web: WebServer, disk_images: Path, method: str
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=web.filter_environ)
    data = (disk_images / "qcow2.img").read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    wrong = hashlib.sha256(b"something else").hexdigest()

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime, disk_format="qcow2")
        body: dict[str, object] = {"validation_data": {"os_hash_algo": "sha256", "os_hash_value": wrong}}
        if method == "glance-direct":
            await stage(runtime, image_id, data)
            body["method"] = {"name": "glance-direct"}
        else:
            body["method"] = {"name": "web-download", "uri": web.url("/qcow2.img")}
        task_id = await start_import(runtime, image_id, body)
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_refused(runtime, image_id, task_id, f"has sha256 {actual}, but validation_data expects {wrong}")
    runtime.close()
