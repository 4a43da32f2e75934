"""``"stores": "failed"``: an import or copy that targets exactly the stores the image's last import
or copy failed to write (``os_glance_failed_import``). No task runner runs here: the tests look at
the task each request creates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from apitools import ADMIN, OWNER, new_image
from starlette.testclient import TestClient
from test_import_api import accepted, active_image, set_properties, show, start, task

STORES = {"GLIMPSE_ENABLED_BACKENDS": "fast:file,cheap:file,reliable:file"}
RETRY = {"stores": "failed", "all_stores_must_succeed": False}


@pytest.fixture
def stores_api(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    """Three file stores, no runner, on every database."""
    return make_client(migrated_database_url, GLIMPSE_TASK__EMBEDDED_RUNNER="false", **STORES)


def copy_body(**extra: Any) -> dict[str, Any]:
    return {"method": {"name": "copy-image"}, **extra}


def test_copy_retries_exactly_the_failed_stores(stores_api: TestClient) -> None:
    image_id = active_image(stores_api)
    set_properties(stores_api, image_id, os_glance_failed_import="cheap,reliable")
    task_id = accepted(start(stores_api, image_id, copy_body(**RETRY), ADMIN))
    created = task(stores_api, task_id)
    assert created.stores == ["cheap", "reliable"]
    assert created.input["import_req"]["stores"] == "failed"  # the request as it was sent
    image = show(stores_api, image_id)
    assert image["os_glance_importing_to_stores"] == "cheap,reliable"
    assert image["os_glance_failed_import"] == ""


def test_nothing_failed_is_409_and_bad_combinations_are_400(stores_api: TestClient) -> None:
    image_id = active_image(stores_api)
    response = start(stores_api, image_id, copy_body(stores="failed"), ADMIN)
    assert response.status_code == 409, response.text
    assert response.json()["message"] == (
        f"Image {image_id} has no failed stores to retry (os_glance_failed_import is empty); name the "
        "stores to import to with 'stores', or use 'all_stores'."
    )
    # A store that failed but holds the image now (an operator fixed it by hand) is not retried.
    set_properties(stores_api, image_id, os_glance_failed_import="fast")
    assert start(stores_api, image_id, copy_body(stores="failed"), ADMIN).status_code == 409

    set_properties(stores_api, image_id, os_glance_failed_import="cheap")
    both = start(stores_api, image_id, copy_body(stores="failed", all_stores=True), ADMIN)
    assert both.status_code == 400, both.text
    header = stores_api.post(
        f"/v2/images/{image_id}/import",
        json=copy_body(stores="failed"),
        headers={**ADMIN, "X-Image-Meta-Store": "cheap"},
    )
    assert header.status_code == 400, header.text
    assert "x-image-meta-store" in header.json()["message"]
    other = start(stores_api, image_id, copy_body(stores="cheap"), ADMIN)
    assert other.status_code == 400
    assert '"failed"' in other.json()["message"]


def test_owner_retries_its_partly_failed_import_as_a_copy(stores_api: TestClient) -> None:
    image_id = active_image(stores_api)
    set_properties(stores_api, image_id, os_glance_failed_import="reliable")
    body = {"method": {"name": "web-download", "uri": "https://images.example.com/a.raw"}, **RETRY}
    # The owner (a member, not an admin) may: it only completes the import it asked for.
    task_id = accepted(start(stores_api, image_id, body, OWNER))
    created = task(stores_api, task_id)
    assert created.stores == ["reliable"]
    assert created.input["import_req"] == {
        "method": {"name": "copy-image"},
        "stores": "failed",
        "all_stores_must_succeed": False,
    }
    assert show(stores_api, image_id)["status"] == "active"


def test_import_into_a_queued_image_retries_the_failed_stores(stores_api: TestClient) -> None:
    image_id = new_image(stores_api)["id"]
    set_properties(stores_api, image_id, os_glance_failed_import="cheap,reliable")
    body = {"method": {"name": "web-download", "uri": "https://images.example.com/a.raw"}, "stores": "failed"}
    task_id = accepted(start(stores_api, image_id, body))
    created = task(stores_api, task_id)
    assert created.stores == ["cheap", "reliable"]
    assert created.method is not None
    assert str(created.method) == "web-download"
    assert show(stores_api, image_id)["status"] == "importing"
