"""ImportRequest: one parse of an import body with Glance's checks, and the body given back as sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from glimpse.domain.imports import ALL_STORES_CONFLICT, ImportMethod, ImportRequest
from glimpse.domain.tasks import ImportTaskRequest, Task, TaskStatus, TaskType
from glimpse.errors import InvalidInput


@pytest.mark.parametrize(
    "body",
    [
        {"method": {"name": "glance-direct"}},
        {"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"], "all_stores_must_succeed": False},
        {"method": {"name": "web-download", "uri": "https://example.com/a.img"}, "all_stores": True},
        {"method": {"name": "copy-image"}, "stores": ["b", "a", "b"], "all_stores_must_succeed": True},
        {"method": {"name": "copy-image"}, "all_stores": False, "all_stores_must_succeed": False},
        {
            "method": {
                "name": "glance-download",
                "glance_image_id": "36d4b546-64a2-4bb9-bdd0-ba676aa48f2c",
                "glance_region": "RegionTwo",
                "glance_service_interface": "internal",
            },
            "stores": ["fast"],
        },
    ],
)
def test_a_body_comes_back_as_it_was_sent(body: dict[str, Any]) -> None:
    request = ImportRequest.from_dict(body)
    assert request.to_dict() == body
    assert ImportRequest.from_dict(request.to_dict()) == request


def test_the_parsed_fields() -> None:
    request = ImportRequest.from_dict(
        {"method": {"name": "web-download", "uri": "http://x/y"}, "stores": ["a", "a", "b"]}
    )
    assert request.method is ImportMethod.WEB_DOWNLOAD
    assert request.uri == "http://x/y"
    assert request.stores == ("a", "a", "b")
    assert (request.all_stores, request.all_stores_must_succeed) == (False, True)
    copy = ImportRequest.from_dict({"method": {"name": "copy-image", "uri": "ignored"}})
    assert copy.uri is None
    assert copy.stores is None


def test_methods() -> None:
    assert [str(m) for m in ImportMethod] == [
        "glance-direct",
        "web-download",
        "copy-image",
        "glance-download",
    ]
    assert ImportMethod.GLANCE_DOWNLOAD.brings_data
    assert ImportMethod.GLANCE_DIRECT.brings_data
    assert ImportMethod.WEB_DOWNLOAD.brings_data
    assert not ImportMethod.COPY_IMAGE.brings_data
    assert ImportMethod.parse("copy-image") is ImportMethod.COPY_IMAGE
    assert ImportMethod.parse("copy_image") is None
    assert ImportMethod.parse(3) is None


_REMOTE = "36d4b546-64a2-4bb9-bdd0-ba676aa48f2c"


def test_glance_download_defaults_to_the_public_interface() -> None:
    body = {"method": {"name": "glance-download", "glance_image_id": _REMOTE, "glance_region": "RegionTwo"}}
    request = ImportRequest.from_dict(body)
    assert (request.glance_image_id, request.glance_region) == (_REMOTE, "RegionTwo")
    assert request.glance_service_interface == "public"
    assert request.to_dict()["method"]["glance_service_interface"] == "public"
    with pytest.raises(InvalidInput, match="Unknown import method name 'glance-download'"):
        ImportRequest.from_dict(body, ["glance-direct", "web-download", "copy-image"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "Body expected in request."),
        ([], "The import request body must be a JSON object with a 'method' field."),
        ({}, "Import request requires a 'method' field."),
        ({"method": "glance-direct"}, "Import request requires a 'name' field."),
        ({"method": {"name": "ftp"}}, "Unknown import method name 'ftp'."),
        ({"method": {"name": ["x"]}}, "Unknown import method name '['x']'."),
        (
            {"method": {"name": "copy-image"}, "all_stores_must_succeed": "no"},
            "'all_stores_must_succeed' must be boolean value only",
        ),
        ({"method": {"name": "copy-image"}, "all_stores": 1}, "'all_stores' must be boolean value only"),
        ({"method": {"name": "copy-image"}, "all_stores": True, "stores": ["a"]}, ALL_STORES_CONFLICT),
        ({"method": {"name": "copy-image"}, "stores": []}, "'stores' must be a non-empty list"),
        ({"method": {"name": "copy-image"}, "stores": "a,b"}, "'stores' must be a non-empty list"),
        ({"method": {"name": "copy-image"}, "stores": ["a", 2]}, "'stores' must be a non-empty list"),
        ({"method": {"name": "web-download"}}, "URI for web-download does not pass filtering: None"),
        ({"method": {"name": "web-download", "uri": 7}}, "URI for web-download does not pass filtering: 7"),
        (
            {"method": {"name": "glance-download", "glance_image_id": _REMOTE}},
            "Import request requires a 'glance_region' field",
        ),
        (
            {"method": {"name": "glance-download", "glance_region": "RegionTwo"}},
            "Import request requires a 'glance_image_id' field",
        ),
        (
            {"method": {"name": "glance-download", "glance_region": "R", "glance_image_id": "foo"}},
            "Remote image id does not look like a UUID: 'foo'",
        ),
        (
            {"method": {"name": "glance-download", "glance_region": 3, "glance_image_id": _REMOTE}},
            "'glance_region' must name a region",
        ),
        (
            {
                "method": {
                    "name": "glance-download",
                    "glance_region": "R",
                    "glance_image_id": _REMOTE,
                    "glance_service_interface": ["public"],
                }
            },
            "'glance_service_interface' must be a catalog interface",
        ),
    ],
)
def test_glance_checks_and_messages(body: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ImportRequest.from_dict(body)
    assert caught.value.message.startswith(message)


def test_only_enabled_methods_are_accepted() -> None:
    body = {"method": {"name": "web-download", "uri": "http://x/y"}}
    with pytest.raises(InvalidInput, match="Unknown import method name 'web-download'"):
        ImportRequest.from_dict(body, ("glance-direct", "copy-image"))
    assert ImportRequest.from_dict(body, ("web-download",)).method is ImportMethod.WEB_DOWNLOAD


SHA256_OF_NOTHING = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_validation_data_is_parsed_and_kept_in_the_task_input() -> None:
    body = {
        "method": {"name": "web-download", "uri": "https://example.com/a.img"},
        "validation_data": {"os_hash_algo": "sha256", "os_hash_value": SHA256_OF_NOTHING.upper()},
    }
    request = ImportRequest.from_dict(body)
    assert request.validation_data is not None
    assert (request.validation_data.algorithm, request.validation_data.value) == ("sha256", SHA256_OF_NOTHING)
    assert request.to_dict()["validation_data"] == {
        "os_hash_algo": "sha256",
        "os_hash_value": SHA256_OF_NOTHING,
    }
    assert ImportRequest.from_dict(request.to_dict()) == request
    assert ImportRequest.from_dict({"method": {"name": "glance-direct"}}).validation_data is None


@pytest.mark.parametrize(
    ("validation_data", "words"),
    [
        ("sha256:abc", "must be an object with exactly os_hash_algo and os_hash_value"),
        ({"os_hash_algo": "sha256"}, "must be an object with exactly os_hash_algo and os_hash_value"),
        ({"os_hash_algo": "crc32", "os_hash_value": "00"}, "os_hash_algo 'crc32' is not supported"),
        (
            {"os_hash_algo": "sha256", "os_hash_value": "abc"},
            "the sha256 digest of the data as 64 hexadecimal",
        ),
        ({"os_hash_algo": "md5", "os_hash_value": "z" * 32}, "the md5 digest of the data as 32 hexadecimal"),
    ],
)
def test_bad_validation_data_is_400(validation_data: object, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ImportRequest.from_dict({"method": {"name": "glance-direct"}, "validation_data": validation_data})
    assert words in caught.value.message


def test_copy_image_takes_no_validation_data() -> None:
    with pytest.raises(InvalidInput, match="'validation_data' is for the methods that bring new data"):
        ImportRequest.from_dict(
            {
                "method": {"name": "copy-image"},
                "validation_data": {"os_hash_algo": "sha256", "os_hash_value": SHA256_OF_NOTHING},
            }
        )


# -- tasks of type import (POST /v2/tasks) ------------------------------------------------------------


def _import_task(given: dict[str, object]) -> Task:
    moment = datetime(2026, 12, 6, tzinfo=UTC)
    return Task(
        id="t",
        type=TaskType.IMPORT,
        status=TaskStatus.PENDING,
        owner="p",
        image_id="i",
        request_id=None,
        user_id=None,
        input=given,
        created_at=moment,
        updated_at=moment,
    )


def test_an_import_task_runs_as_a_web_download_of_its_url() -> None:
    given: dict[str, Any] = {
        "import_from": "https://example.com/a.qcow2",
        "import_from_format": "qcow2",
        "image_properties": {"disk_format": "qcow2", "container_format": "bare"},
        "backend": "cheap",
    }
    body = {"type": "import", "input": given}
    parsed = ImportTaskRequest.from_body(body)
    request = parsed.import_request()
    assert (request.method, request.uri, request.stores) == (
        ImportMethod.WEB_DOWNLOAD,
        "https://example.com/a.qcow2",
        ("cheap",),
    )
    stored = parsed.task_input(["cheap"])
    assert stored == {**given, "backend": ["cheap"]}
    task = _import_task(stored)
    assert task.import_request is not None
    assert (task.method, task.import_request.uri, task.stores) == (
        ImportMethod.WEB_DOWNLOAD,
        "https://example.com/a.qcow2",
        ["cheap"],
    )
    # an input without a URL is no request: the runner fails such a task with a message
    assert _import_task({"import_from_format": "raw"}).import_request is None
