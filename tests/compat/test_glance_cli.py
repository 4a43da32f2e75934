"""The ``glance`` command (python-glanceclient) against a live Glimpse, checked from both sides.

Every command runs as its own process with a fresh ``HOME`` (so the client fetches and caches this
server's schemas) and no ``OS_*`` variables, talking to the server with ``--os-image-url`` and a
dummy token. The CLI cannot send identity headers, so acting as the member project or as an admin
means talking to the server whose no-auth default identity is that one (see ``conftest.py``). What
the CLI prints is parsed from its tables and compared with what the server reports over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from livesupport import Server

pytestmark = pytest.mark.live

GLANCE_TIMEOUT = 60


def _glance_bin() -> Path:
    beside = Path(sys.executable).with_name("glance")
    return beside if beside.exists() else Path(__file__).resolve().parents[2] / ".venv" / "bin" / "glance"


def _close_stdin() -> None:
    # glanceclient reads image data from stdin whenever fd 0 is open and not a terminal; a closed
    # fd 0 is how a script says "no data", exactly as `glance image-create ... <&-` does.
    os.close(0)


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return (
            f"glance {' '.join(self.args)} exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


class Glance:
    """Runs ``glance`` against one of the live servers."""

    def __init__(self, home: Path) -> None:
        self.binary = _glance_bin()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        self.env.update({"HOME": str(home), "PYTHONWARNINGS": "ignore"})

    def run(self, server: Server, *args: str, expect_ok: bool = True, debug: bool = False) -> Result:
        command = [
            str(self.binary),
            *(["--debug"] if debug else []),
            "--os-image-url",
            server.url,
            "--os-auth-token",
            "compat-token",
            *args,
        ]
        proc = subprocess.run(
            command,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=GLANCE_TIMEOUT,
            check=False,
            preexec_fn=_close_stdin,
        )
        result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        if expect_ok:
            assert result.returncode == 0, result.explain()
        else:
            assert result.returncode != 0, result.explain()
        return result


def table(output: str) -> list[dict[str, str]]:
    """The rows of the first prettytable in ``output``; wrapped cells are joined back together."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    assert lines, f"no table in output:\n{output}"
    header = [cell.strip() for cell in lines[0][1:-1].split("|")]
    rows: list[dict[str, str]] = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line[1:-1].split("|")]
        assert len(cells) == len(header), f"ragged table line {line!r}"
        if rows and cells[0] == "":
            for name, cell in zip(header[1:], cells[1:], strict=True):
                rows[-1][name] += cell
        else:
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def properties(output: str) -> dict[str, str]:
    """A ``Property | Value`` table as a dict."""
    return {row["Property"]: row["Value"] for row in table(output)}


def wrapped_json(value: str) -> Any:
    """A JSON value the CLI printed over several lines; the wrap points lost their spaces, so the
    values compared must themselves contain no whitespace."""
    return json.loads(re.sub(r"\s+", "", value))


@pytest.fixture(scope="module")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Glance:
    return Glance(tmp_path_factory.mktemp("glance-home"))


@pytest.fixture
def make_image(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Create an image over HTTP as the owner (the CLI is checked elsewhere)."""

    def make(**attrs: Any) -> dict[str, Any]:
        body = {"disk_format": "raw", "container_format": "bare", "name": f"cli-{uuid.uuid4().hex[:8]}"}
        response = api.post("/v2/images", json={**body, **attrs})
        assert response.status_code == 201, response.text
        image: dict[str, Any] = response.json()
        return image

    return make


def server_image(api: httpx.Client, image_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = api.get(f"/v2/images/{image_id}", headers=headers)
    assert response.status_code == 200, response.text
    image: dict[str, Any] = response.json()
    return image


def test_create_upload_download_show(
    glance: Glance, owner: Server, api: httpx.Client, tmp_path: Path
) -> None:
    name = f"cli-data-{uuid.uuid4().hex[:8]}"
    created = properties(
        glance.run(
            owner,
            "image-create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--name",
            name,
            "--property",
            "os_distro=cirros",
            "--property",
            "compat_case=create",
        ).stdout
    )
    image_id = created["id"]
    assert uuid.UUID(image_id)
    assert created["name"] == name
    assert created["status"] == "queued"
    assert created["os_distro"] == "cirros"
    assert created["compat_case"] == "create"
    assert created["owner"] == "compat-owner"
    assert (created["disk_format"], created["container_format"]) == ("raw", "bare")
    on_server = server_image(api, image_id)
    assert on_server["status"] == "queued"
    assert on_server["size"] is None
    assert on_server["os_distro"] == "cirros"

    data = os.urandom(1024 * 1024 + 123)
    source = tmp_path / "image.raw"
    source.write_bytes(data)
    glance.run(owner, "image-upload", "--file", str(source), image_id)
    on_server = server_image(api, image_id)
    assert on_server["status"] == "active"
    assert on_server["size"] == len(data)
    assert on_server["checksum"] == hashlib.md5(data).hexdigest()  # noqa: S324 - Glance's checksum is MD5
    assert on_server["os_hash_algo"] == "sha512"
    assert on_server["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert on_server["stores"] == "fast"

    target = tmp_path / "downloaded.raw"
    glance.run(owner, "image-download", "--file", str(target), image_id)
    assert target.read_bytes() == data

    shown = properties(glance.run(owner, "image-show", image_id).stdout)
    assert shown["status"] == "active"
    assert shown["size"] == str(len(data))
    assert shown["checksum"] == on_server["checksum"]
    assert shown["os_hash_value"] == on_server["os_hash_value"]
    assert shown["stores"] == "fast"
    assert shown["os_distro"] == "cirros"


def test_create_with_file_into_a_chosen_store(
    glance: Glance, owner: Server, api: httpx.Client, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    source = tmp_path / "small.raw"
    source.write_bytes(data)
    created = properties(
        glance.run(
            owner,
            "image-create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--name",
            "cli-with-file",
            "--file",
            str(source),
            "--store",
            "cheap",
        ).stdout
    )
    assert created["status"] == "active"
    assert created["size"] == str(len(data))
    assert created["stores"] == "cheap"
    download = api.get(f"/v2/images/{created['id']}/file")
    assert download.status_code == 200
    assert download.content == data


def test_image_list_filters_and_paging(
    glance: Glance, owner: Server, make_image: Callable[..., dict[str, Any]]
) -> None:
    batch = uuid.uuid4().hex[:12]
    images = [
        make_image(
            name=f"batch-{batch}-{index:02d}",
            compat_batch=batch,
            visibility="private" if index == 3 else "shared",
            tags=["odd"] if index % 2 else [],
        )
        for index in range(7)
    ]
    make_image(name=f"batch-{batch}-other", compat_batch="someone-else", tags=["odd"])
    by_name = [image["id"] for image in sorted(images, key=lambda image: image["name"])]
    batch_filter = ("--property-filter", f"compat_batch={batch}")

    paged = glance.run(owner, "image-list", *batch_filter, "--page-size", "3", debug=True)
    rows = table(paged.stdout)
    assert [row["ID"] for row in rows] == by_name
    assert [row["Name"] for row in rows] == sorted(image["name"] for image in images)
    requests = [
        line for line in paged.stderr.splitlines() if line.startswith("curl") and "/v2/images?" in line
    ]
    # 7 images at 3 a page: two full pages that link to the next, then a last one with a single image.
    assert len(requests) == 3, "\n".join(requests)
    assert all("limit=3" in line for line in requests)
    assert "marker=" not in requests[0]
    assert f"marker={by_name[2]}" in requests[1]
    assert f"marker={by_name[5]}" in requests[2]

    limited = table(glance.run(owner, "image-list", *batch_filter, "--limit", "4", "--page-size", "2").stdout)
    assert [row["ID"] for row in limited] == by_name[:4]

    private = table(glance.run(owner, "image-list", *batch_filter, "--visibility", "private").stdout)
    assert [row["ID"] for row in private] == [images[3]["id"]]

    # Tag, visibility and sort together: the odd-numbered images but the private one, backwards.
    filtered = glance.run(
        owner,
        "image-list",
        *batch_filter,
        "--tag",
        "odd",
        "--visibility",
        "shared",
        "--sort-key",
        "name",
        "--sort-dir",
        "desc",
    )
    assert [row["ID"] for row in table(filtered.stdout)] == [by_name[5], by_name[1]]


def test_image_update_name_and_properties(
    glance: Glance, owner: Server, api: httpx.Client, make_image: Callable[..., dict[str, Any]]
) -> None:
    image = make_image(keep_me="1", change_me="old", drop_me="x")
    updated = properties(
        glance.run(
            owner,
            "image-update",
            "--name",
            "cli-renamed",
            "--min-disk",
            "3",
            "--property",
            "change_me=new",
            "--property",
            "added=yes",
            "--remove-property",
            "drop_me",
            image["id"],
        ).stdout
    )
    assert updated["name"] == "cli-renamed"
    assert updated["min_disk"] == "3"
    assert updated["change_me"] == "new"
    assert updated["added"] == "yes"
    assert updated["keep_me"] == "1"
    assert "drop_me" not in updated
    on_server = server_image(api, image["id"])
    assert on_server["name"] == "cli-renamed"
    assert on_server["min_disk"] == 3
    assert (on_server["keep_me"], on_server["change_me"], on_server["added"]) == ("1", "new", "yes")
    assert "drop_me" not in on_server
    assert on_server["updated_at"] >= image["updated_at"]


def test_image_tags(
    glance: Glance, owner: Server, api: httpx.Client, make_image: Callable[..., dict[str, Any]]
) -> None:
    image = make_image()
    first = table(glance.run(owner, "image-tag-update", image["id"], "alpha").stdout)
    assert first == [{"ID": image["id"], "Tags": "['alpha']"}]
    second = table(glance.run(owner, "image-tag-update", image["id"], "beta").stdout)
    assert second == [{"ID": image["id"], "Tags": "['alpha', 'beta']"}]
    assert sorted(server_image(api, image["id"])["tags"]) == ["alpha", "beta"]

    glance.run(owner, "image-tag-delete", image["id"], "alpha")
    assert server_image(api, image["id"])["tags"] == ["beta"]


def test_members_share_accept_and_revoke(
    glance: Glance,
    owner: Server,
    peer: Server,
    api: httpx.Client,
    identity: dict[str, dict[str, str]],
    make_image: Callable[..., dict[str, Any]],
) -> None:
    case = f"members-{uuid.uuid4().hex[:8]}"
    image_id = make_image(visibility="shared", compat_case=case)["id"]
    member = identity["peer"]["X-Project-Id"]
    as_peer = identity["peer"]

    added = table(glance.run(owner, "member-create", image_id, member).stdout)
    assert added == [{"Image ID": image_id, "Member ID": member, "Status": "pending"}]
    listed = table(glance.run(owner, "member-list", "--image-id", image_id).stdout)
    assert listed == [{"Image ID": image_id, "Member ID": member, "Status": "pending"}]
    # Pending: the member sees the image by id but not in its default listing.
    assert api.get(f"/v2/images/{image_id}", headers=as_peer).status_code == 200
    pending_list = api.get("/v2/images", params={"compat_case": case}, headers=as_peer).json()["images"]
    assert image_id not in {image["id"] for image in pending_list}

    accepted = table(glance.run(peer, "member-update", image_id, member, "accepted").stdout)
    assert accepted == [{"Image ID": image_id, "Member ID": member, "Status": "accepted"}]
    on_server = api.get(f"/v2/images/{image_id}/members/{member}")
    assert on_server.status_code == 200
    assert on_server.json()["status"] == "accepted"
    peer_list = table(glance.run(peer, "image-list", "--property-filter", f"compat_case={case}").stdout)
    assert image_id in {row["ID"] for row in peer_list}

    # Only the member decides its status; the owner is refused and nothing changes.
    refused = glance.run(owner, "member-update", image_id, member, "rejected", expect_ok=False)
    assert "403" in refused.stderr, refused.explain()
    assert api.get(f"/v2/images/{image_id}/members/{member}").json()["status"] == "accepted"

    glance.run(owner, "member-delete", image_id, member)
    assert api.get(f"/v2/images/{image_id}/members").json()["members"] == []
    assert api.get(f"/v2/images/{image_id}", headers=as_peer).status_code == 404


def test_stores_and_import_info(glance: Glance, owner: Server, admin: Server) -> None:
    stores = properties(glance.run(owner, "stores-info").stdout)
    assert wrapped_json(stores["stores"]) == [
        {"id": "fast", "description": "fast-local-disk", "default": "true"},
        {"id": "cheap", "description": "cheap-bulk-disk"},
    ]

    refused = glance.run(owner, "stores-info", "--detail", expect_ok=False)
    assert "403" in refused.stderr, refused.explain()
    detail = wrapped_json(properties(glance.run(admin, "stores-info", "--detail").stdout)["stores"])
    assert [store["id"] for store in detail] == ["fast", "cheap"]
    assert all(store["type"] == "file" for store in detail)
    assert detail[0]["default"] == "true"
    assert "default" not in detail[1]
    assert all(isinstance(store["properties"], dict) for store in detail)

    methods = wrapped_json(properties(glance.run(owner, "import-info").stdout)["import-methods"])
    assert methods["value"] == ["glance-direct", "web-download", "copy-image"]


def test_image_delete(
    glance: Glance, owner: Server, api: httpx.Client, make_image: Callable[..., dict[str, Any]]
) -> None:
    image_id = make_image()["id"]
    upload = api.put(
        f"/v2/images/{image_id}/file",
        content=b"delete me",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 204

    glance.run(owner, "image-delete", image_id)
    assert api.get(f"/v2/images/{image_id}").status_code == 404
    assert api.get(f"/v2/images/{image_id}/file").status_code == 404

    again = glance.run(owner, "image-delete", image_id, expect_ok=False)
    assert image_id in again.stderr, again.explain()
