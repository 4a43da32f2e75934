"""PUT /v2/images/{id}/file with real disk images made by qemu-img: each format is recognised and its
virtual size recorded; content that is not the image's disk_format is 415, unsafe content 400 naming
the check; either way the image is back to queued and no store keeps anything."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from apitools import OCTET, OWNER, new_image
from starlette.testclient import TestClient

MIB4 = 4 * 1024 * 1024

# Each image of scripts/test-images.sh, its disk_format and the virtual size its header gives.
GOOD = [
    ("raw.img", "raw", MIB4),
    ("qcow2.img", "qcow2", MIB4),
    ("vmdk.img", "vmdk", MIB4),
    ("vmdk-stream.img", "vmdk", MIB4),
    ("vhd.img", "vhd", 4212736),  # qemu rounds a VHD up to whole cylinders
    ("vhdx.img", "vhdx", MIB4),
    ("vdi.img", "vdi", MIB4),
    ("iso.iso", "iso", None),  # the ISO's own size: checked below
]


def store_files(client: TestClient) -> list[Path]:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return [p for store in runtime.stores.all() if store.datadir.exists() for p in store.datadir.iterdir()]


def put_file(client: TestClient, image_id: str, data: bytes) -> tuple[int, str]:
    response = client.put(f"/v2/images/{image_id}/file", content=data, headers={**OWNER, **OCTET})
    return response.status_code, response.text if response.status_code != 204 else ""


@pytest.fixture
def sqlite_client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.mark.parametrize(("name", "disk_format", "virtual_size"), GOOD)
def test_each_format_is_accepted_with_its_virtual_size(
    sqlite_client: TestClient, disk_images: Path, name: str, disk_format: str, virtual_size: int | None
) -> None:
    data = (disk_images / name).read_bytes()
    image = new_image(sqlite_client, disk_format=disk_format)
    assert put_file(sqlite_client, image["id"], data) == (204, "")
    body = sqlite_client.get(f"/v2/images/{image['id']}").json()
    assert body["status"] == "active"
    assert body["size"] == len(data)
    assert body["virtual_size"] == (virtual_size or len(data))
    assert body["checksum"] == hashlib.md5(data).hexdigest()  # noqa: S324 - Glance's checksum is md5
    assert body["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert sqlite_client.get(f"/v2/images/{image['id']}/file").content == data


@pytest.mark.parametrize(
    ("name", "disk_format", "detected"),
    [
        ("qcow2.img", "raw", "qcow2"),  # a raw image that is really qcow2
        ("raw.img", "qcow2", "raw"),
        ("vmdk.img", "vhd", "vmdk"),
        ("vdi.img", "vhdx", "vdi"),
        ("iso.iso", "raw", "iso"),
    ],
)
def test_content_not_in_the_disk_format_is_415(
    client: TestClient, disk_images: Path, name: str, disk_format: str, detected: str
) -> None:
    image = new_image(client, disk_format=disk_format)
    status, text = put_file(client, image["id"], (disk_images / name).read_bytes())
    assert status == 415, text
    assert f"The image data is {detected}, but the image's disk_format is {disk_format}" in text
    assert "Nothing was stored and the image is still queued." in text
    body = client.get(f"/v2/images/{image['id']}").json()
    assert (body["status"], body["size"], body["virtual_size"], body["checksum"]) == (
        "queued",
        None,
        None,
        None,
    )
    assert store_files(client) == []
    # The same image then takes data that matches.
    good = {"raw": "raw.img", "qcow2": "qcow2.img", "vhd": "vhd.img", "vhdx": "vhdx.img"}[disk_format]
    assert put_file(client, image["id"], (disk_images / good).read_bytes()) == (204, "")


@pytest.mark.parametrize(
    ("name", "disk_format", "check", "reason"),
    [
        ("qcow2-backing.img", "qcow2", "backing_file", "Image has a backing file"),
        ("qcow2-datafile.img", "qcow2", "data_file", "Image has data_file set"),
        ("vmdk-flat-passwd.vmdk", "vmdk", "descriptor", "Unsupported subformat"),
    ],
)
def test_unsafe_content_is_400_naming_the_check(
    sqlite_client: TestClient, disk_images: Path, name: str, disk_format: str, check: str, reason: str
) -> None:
    image = new_image(sqlite_client, disk_format=disk_format)
    status, text = put_file(sqlite_client, image["id"], (disk_images / name).read_bytes())
    assert status == 400, text
    assert f"The image data is {disk_format} and fails its safety check '{check}': {reason}." in text
    assert sqlite_client.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert store_files(sqlite_client) == []


def test_without_the_format_match_rule_mismatches_pass_but_unsafe_images_do_not(
    make_client: Callable[..., TestClient], disk_images: Path
) -> None:
    client = make_client(GLIMPSE_IMAGE_FORMAT__REQUIRE_IMAGE_FORMAT_MATCH="false")
    image = new_image(client, disk_format="raw")
    assert put_file(client, image["id"], (disk_images / "qcow2.img").read_bytes()) == (204, "")
    assert client.get(f"/v2/images/{image['id']}").json()["virtual_size"] == MIB4  # what qemu will see
    unsafe = new_image(client, disk_format="raw")
    status, text = put_file(client, unsafe["id"], (disk_images / "vmdk-flat-passwd.vmdk").read_bytes())
    assert status == 400, text
    assert "safety check 'descriptor'" in text


def bad_protective_mbr(size: int = 1024 * 1024) -> bytes:
    """A raw disk whose MBR has a GPT protective partition starting at the wrong LBA."""
    entry = struct.pack("<B3BB3BII", 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 7, size // 512 - 1)
    mbr = bytes(446) + entry + bytes(48) + b"\x55\xaa"
    return mbr + bytes(size - len(mbr))


def test_gpt_check_failures_are_not_fatal_unless_configured(make_client: Callable[..., TestClient]) -> None:
    data = bad_protective_mbr()
    lenient = make_client()
    image = new_image(lenient, disk_format="raw")
    assert put_file(lenient, image["id"], data) == (204, "")
    assert lenient.get(f"/v2/images/{image['id']}").json()["virtual_size"] == len(data)
    strict = make_client(GLIMPSE_IMAGE_FORMAT__GPT_SAFETY_CHECKS_NONFATAL="false")
    image = new_image(strict, disk_format="raw")
    status, text = put_file(strict, image["id"], data)
    assert status == 400, text
    assert "The image data is gpt and fails its safety check 'mbr': GPT MBR has invalid start LBA." in text


@pytest.mark.parametrize(
    ("name", "disk_format", "status", "words"),
    [
        ("qcow2-datafile.img", "qcow2", 400, "fails its safety check 'data_file'"),
        ("qcow2.img", "raw", 415, "The image data is qcow2, but the image's disk_format is raw"),
        ("vmdk-flat-passwd.vmdk", None, 400, "fails its safety check 'descriptor'"),  # no format yet
    ],
)
def test_staging_refuses_what_an_upload_would(
    sqlite_client: TestClient, disk_images: Path, name: str, disk_format: str | None, status: int, words: str
) -> None:
    image = new_image(sqlite_client, disk_format=disk_format)
    response = sqlite_client.put(
        f"/v2/images/{image['id']}/stage",
        content=(disk_images / name).read_bytes(),
        headers={**OWNER, **OCTET},
    )
    assert response.status_code == status, response.text
    assert words in response.text
    assert "Nothing was staged and the image is still queued." in response.text
    assert sqlite_client.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    runtime = sqlite_client.app.state.runtime  # type: ignore[attr-defined]
    assert not any(runtime.stores.staging.datadir.iterdir())
    good = sqlite_client.put(
        f"/v2/images/{image['id']}/stage",
        content=(disk_images / "raw.img").read_bytes(),
        headers={**OWNER, **OCTET},
    )
    assert good.status_code == (204 if disk_format in ("raw", None) else 415), good.text


def digest_header(algorithm: str, data: bytes) -> str:
    name = {"sha256": "sha-256", "sha512": "sha-512"}[algorithm]
    return f"{name}=:{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}:"


def kept_files(client: TestClient, where: str) -> list[Path]:
    """What the stores (``file``) or the staging area (``stage``) hold."""
    if where == "file":
        return store_files(client)
    staging = client.app.state.runtime.stores.staging  # type: ignore[attr-defined]
    return list(staging.datadir.iterdir()) if staging.datadir.exists() else []


#: Where digest headers are taken: the status a good request leaves, and what a refusal says.
DIGEST_PATHS = {
    "file": ("active", "Nothing was stored and the image is still queued."),
    "stage": ("uploading", "Nothing was staged and the image is still queued."),
}


@pytest.mark.parametrize("where", sorted(DIGEST_PATHS))
@pytest.mark.parametrize(("header", "algorithm"), [("Content-Digest", "sha256"), ("Repr-Digest", "sha512")])
def test_data_with_the_right_digest_header(
    sqlite_client: TestClient, disk_images: Path, header: str, algorithm: str, where: str
) -> None:
    data = (disk_images / "raw.img").read_bytes()
    image = new_image(sqlite_client)
    value = f"md5=:AAAA:, {digest_header(algorithm, data)}"  # unsupported algorithms are left out
    response = sqlite_client.put(
        f"/v2/images/{image['id']}/{where}", content=data, headers={**OWNER, **OCTET, header: value}
    )
    assert response.status_code == 204, response.text
    body = sqlite_client.get(f"/v2/images/{image['id']}").json()
    assert (body["status"], body["size"]) == (DIGEST_PATHS[where][0], len(data))
    assert len(kept_files(sqlite_client, where)) == 1


@pytest.mark.parametrize("where", sorted(DIGEST_PATHS))
def test_data_with_another_digest_is_400_with_both_values(
    sqlite_client: TestClient, disk_images: Path, where: str
) -> None:
    data = (disk_images / "qcow2.img").read_bytes()
    image = new_image(sqlite_client, disk_format="qcow2")
    response = sqlite_client.put(
        f"/v2/images/{image['id']}/{where}",
        content=data,
        headers={**OWNER, **OCTET, "Content-Digest": digest_header("sha256", b"other bytes")},
    )
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert (
        f"The uploaded data has sha256 {hashlib.sha256(data).hexdigest()}, but the request's digest header "
        f"says {hashlib.sha256(b'other bytes').hexdigest()}." in message
    )
    assert message.endswith(DIGEST_PATHS[where][1])
    assert sqlite_client.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert kept_files(sqlite_client, where) == []
    again = sqlite_client.put(  # nothing was left behind: the right data goes in
        f"/v2/images/{image['id']}/{where}",
        content=data,
        headers={**OWNER, **OCTET, "Repr-Digest": digest_header("sha512", data)},
    )
    assert again.status_code == 204, again.text


@pytest.mark.parametrize("where", sorted(DIGEST_PATHS))
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("sha-256=abc", "is not valid (RFC 9530)"),
        ("sha-256=:not base64!:", "is not valid (RFC 9530)"),
        ("sha-256=:AAAA:", "has 3 bytes, not a sha-256 digest"),
        ("md5=:AAAA:", "names no supported algorithm; use sha-256 or sha-512"),
    ],
)
def test_a_bad_digest_header_is_400_before_any_data_is_read(
    sqlite_client: TestClient, value: str, words: str, where: str
) -> None:
    image = new_image(sqlite_client)
    response = sqlite_client.put(
        f"/v2/images/{image['id']}/{where}",
        content=b"data",
        headers={**OWNER, **OCTET, "Content-Digest": value},
    )
    assert response.status_code == 400, response.text
    assert words in response.json()["message"]
    assert sqlite_client.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert kept_files(sqlite_client, where) == []
