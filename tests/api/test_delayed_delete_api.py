"""DELETE /v2/images/{id} with ``delayed_delete``: the image is hidden as a deleted one at once (404,
left out of lists, its id never reused) while its data stays for the scrubber
(tests/integration/test_scrubber.py runs the scrubber itself)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from apitools import ADMIN, new_image, upload
from starlette.testclient import TestClient


def test_a_deleted_image_is_hidden_and_keeps_its_data(
    make_client: Callable[..., TestClient], migrated_database_url: str, tmp_path: Path
) -> None:
    client = make_client(migrated_database_url, GLIMPSE_DELAYED_DELETE="true", GLIMPSE_SCRUB_TIME="3600")
    image = new_image(client)
    upload(client, image["id"], b"x" * 4096)
    response = client.delete(f"/v2/images/{image['id']}")
    assert response.status_code == 204, response.text
    for path in (f"/v2/images/{image['id']}", f"/v2/images/{image['id']}/file"):
        assert client.get(path, headers=ADMIN).status_code == 404
    assert client.get("/v2/images?visibility=all", headers=ADMIN).json()["images"] == []
    again = client.post("/v2/images", json={"id": image["id"], "name": "again"})
    assert again.status_code == 409, again.text
    assert client.delete(f"/v2/images/{image['id']}").status_code == 404
    kept = list((tmp_path / "app0" / "data" / "stores").glob(f"*/{image['id']}"))
    assert [path.read_bytes() for path in kept] == [b"x" * 4096]
