"""The /v2/schemas/* documents: equal to Glance's, valid JSON Schema, and usable by python-glanceclient."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import warlock  # type: ignore[import-untyped]
from glanceclient.v2 import namespace_schema as glanceclient_namespace_schema
from glanceclient.v2 import resource_type_schema as glanceclient_resource_type_schema
from glanceclient.v2.schemas import Schema as GlanceclientSchema
from glanceclient.v2.schemas import SchemaBasedModel

from glimpse.api import schemas
from glimpse.domain.images import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "glance_samples"


def _sample_text(name: str) -> str:
    path = SAMPLES / name
    if not path.is_file():
        pytest.fail(f"test fixture {path} is missing; it is a captured Glance response kept in the repo")
    return path.read_text(encoding="utf-8")


def _sample(name: str) -> Any:
    return json.loads(_sample_text(name))


def _sample_formats() -> tuple[list[str], list[str]]:
    """The disk and container formats the sample lists, without its leading ``null``."""
    props = _sample("schema_image.json")["properties"]
    disk = [f for f in props["disk_format"]["enum"] if f is not None]
    container = [f for f in props["container_format"]["enum"] if f is not None]
    return disk, container


def _sample_image_schema() -> dict[str, Any]:
    disk, container = _sample_formats()
    return schemas.image_schema(disk, container)


def _validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(schema)


def _errors(schema: dict[str, Any], instance: object) -> list[str]:
    return [error.message for error in _validator(schema).iter_errors(instance)]


# --- image: equal to Glance's document -------------------------------------------------------------


def test_image_schema_serialises_exactly_like_glance() -> None:
    # Same keys, values and key order: Glance's body is plain json.dumps output.
    assert json.dumps(_sample_image_schema()) == _sample_text("schema_image.json").rstrip("\n")


def test_image_schema_top_level_equals_sample() -> None:
    sample = _sample("schema_image.json")
    ours = _sample_image_schema()
    assert list(ours) == list(sample) == ["name", "properties", "additionalProperties", "links"]
    assert ours["name"] == sample["name"] == "image"
    assert ours["additionalProperties"] == sample["additionalProperties"] == {"type": "string"}
    assert ours["links"] == sample["links"]
    assert list(ours["properties"]) == list(sample["properties"])


@pytest.mark.parametrize("prop", list(json.loads(_sample_text("schema_image.json"))["properties"]))
def test_image_schema_property_equals_sample(prop: str) -> None:
    expected = _sample("schema_image.json")["properties"][prop]
    actual = _sample_image_schema()["properties"][prop]
    assert list(actual) == list(expected), f"{prop}: attributes or their order differ"
    for attribute, value in expected.items():
        assert actual[attribute] == value, f"{prop}.{attribute}"


def test_default_settings_formats_give_glance_default_document() -> None:
    disk, container = _sample_formats()
    assert list(DEFAULT_DISK_FORMATS) == disk
    assert list(DEFAULT_CONTAINER_FORMATS) == container
    assert schemas.image_schema(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS) == _sample(
        "schema_image.json"
    )


def test_format_enums_follow_the_arguments() -> None:
    doc = schemas.image_schema(("qcow2", "raw", "qcow2"), ["bare"])
    assert doc["properties"]["disk_format"]["enum"] == [None, "qcow2", "raw"]
    assert doc["properties"]["container_format"]["enum"] == [None, "bare"]
    empty = schemas.image_schema((), ())
    assert empty["properties"]["disk_format"]["enum"] == [None]
    assert empty["properties"]["container_format"]["enum"] == [None]
    jsonschema.Draft4Validator.check_schema(empty)


# --- every document is valid JSON Schema -----------------------------------------------------------


def test_schema_names_cover_what_glance_clients_fetch() -> None:
    assert set(schemas.SCHEMA_NAMES) == {
        "image",
        "images",
        "member",
        "members",
        "task",
        "tasks",
        "metadefs/namespace",
        "metadefs/namespaces",
        "metadefs/object",
        "metadefs/objects",
        "metadefs/property",
        "metadefs/properties",
        "metadefs/tag",
        "metadefs/tags",
        "metadefs/resource_type",
        "metadefs/resource_types",
    }


@pytest.mark.parametrize("name", sorted(schemas.SCHEMA_NAMES))
def test_every_document_is_valid_draft4(name: str) -> None:
    doc = schemas.SCHEMA_NAMES[name](DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS)
    jsonschema.Draft4Validator.check_schema(doc)
    assert isinstance(doc["name"], str)
    assert isinstance(doc["properties"], dict)
    json.dumps(doc)  # plain JSON types only


@pytest.mark.parametrize("name", sorted(schemas.SCHEMA_NAMES))
def test_every_call_returns_a_fresh_document(name: str) -> None:
    build = schemas.SCHEMA_NAMES[name]
    first = build(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS)
    pristine = copy.deepcopy(first)
    first["properties"].clear()
    first["name"] = "changed"
    assert build(DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS) == pristine


def test_schema_names_image_builders_pass_formats_through() -> None:
    image = schemas.SCHEMA_NAMES["image"](["raw"], ["bare"])
    images = schemas.SCHEMA_NAMES["images"](["raw"], ["bare"])
    assert image == schemas.image_schema(["raw"], ["bare"])
    assert images["properties"]["images"]["items"] == image


# --- image and images validate real bodies ---------------------------------------------------------


def test_uploaded_image_body_validates() -> None:
    assert _errors(_sample_image_schema(), _sample("image_after_upload.json")) == []


def test_queued_image_with_null_formats_and_name_validates() -> None:
    body = _sample("image_after_upload.json")
    body.update(disk_format=None, container_format=None, name=None, size=None, checksum=None)
    assert _errors(_sample_image_schema(), body) == []


def test_unknown_disk_format_is_rejected() -> None:
    body = _sample("image_after_upload.json")
    body["disk_format"] = "floppy"
    errors = _errors(_sample_image_schema(), body)
    assert len(errors) == 1
    assert "floppy" in errors[0]


def test_disk_format_outside_configured_list_is_rejected() -> None:
    body = _sample("image_after_upload.json")  # disk_format "raw"
    assert _errors(schemas.image_schema(["qcow2"], ["bare"]), body) != []


def test_extra_properties_must_be_strings() -> None:
    body = _sample("image_after_upload.json")
    body["hw_scsi_model"] = "virtio-scsi"
    assert _errors(_sample_image_schema(), body) == []
    body["hw_cpu_cores"] = 4
    assert _errors(_sample_image_schema(), body) != []


def test_bad_id_and_overlong_name_are_rejected() -> None:
    body = _sample("image_after_upload.json")
    body["id"] = "not-a-uuid"
    body["name"] = "x" * 256
    assert len(_errors(_sample_image_schema(), body)) == 2


def test_images_collection_matches_glance_layout() -> None:
    disk, container = _sample_formats()
    doc = schemas.images_schema(disk, container)
    assert doc == {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": _sample("schema_image.json")},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }
    page = {
        "images": [_sample("image_after_upload.json")],
        "first": "/v2/images?limit=20",
        "next": "/v2/images?limit=20&marker=f0c01d79-dd47-4241-983d-c0dd50b65dee",
        "schema": "/v2/schemas/images",
    }
    assert _errors(doc, page) == []


# --- members ---------------------------------------------------------------------------------------


def test_member_schema_is_minimal_and_accepts_a_member() -> None:
    doc = schemas.member_schema()
    assert list(doc) == ["name", "properties"]
    assert doc["name"] == "member"
    assert list(doc["properties"]) == [
        "member_id",
        "image_id",
        "created_at",
        "updated_at",
        "status",
        "schema",
    ]
    assert doc["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    assert doc["properties"]["schema"] == {"readOnly": True, "type": "string"}
    member = {
        "member_id": "0b7e1d2c3a4f4e5d8c9b0a1f2e3d4c5b",
        "image_id": "f0c01d79-dd47-4241-983d-c0dd50b65dee",
        "created_at": "2026-11-25T14:12:20Z",
        "updated_at": "2026-11-25T14:12:20Z",
        "status": "pending",
        "schema": "/v2/schemas/member",
    }
    assert _errors(doc, member) == []
    assert _errors(doc, {**member, "status": "maybe"}) != []


def test_members_collection_is_minimal() -> None:
    doc = schemas.members_schema()
    assert doc == {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": schemas.member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


# --- tasks -----------------------------------------------------------------------------------------


def test_task_schema_accepts_glance_task_detail() -> None:
    doc = schemas.task_schema()
    detail = _sample("task_detail.json")
    assert _errors(doc, detail) == []
    assert set(detail) <= set(doc["properties"])


def test_task_schema_shape() -> None:
    doc = schemas.task_schema()
    assert list(doc) == ["name", "properties"]  # minimal: no additionalProperties, no links
    assert doc["name"] == "task"
    assert list(doc["properties"]) == [
        "id",
        "type",
        "status",
        "input",
        "result",
        "owner",
        "message",
        "image_id",
        "request_id",
        "user_id",
        "expires_at",
        "created_at",
        "updated_at",
        "self",
        "schema",
    ]
    props = doc["properties"]
    assert props["type"]["enum"] == ["import", "api_image_import", "location_import"]
    assert props["status"]["enum"] == ["pending", "processing", "success", "failure"]
    assert props["input"]["type"] == props["result"]["type"] == ["null", "object"]
    assert props["expires_at"]["type"] == ["null", "string"]


def test_task_schema_rejects_unknown_status_and_type() -> None:
    detail = _sample("task_detail.json")
    assert _errors(schemas.task_schema(), {**detail, "status": "running"}) != []
    assert _errors(schemas.task_schema(), {**detail, "type": "convert"}) != []


def test_pending_task_with_null_fields_validates() -> None:
    detail = _sample("task_detail.json")
    detail.update(status="pending", result=None, expires_at=None, message="")
    assert _errors(schemas.task_schema(), detail) == []


def test_tasks_collection_accepts_glance_task_list() -> None:
    doc = schemas.tasks_schema()
    assert list(doc) == ["name", "properties", "links"]
    assert doc["links"] == [{"rel": "describedby", "href": "{schema}"}]
    assert list(doc["properties"]) == ["tasks", "schema"]
    stub = doc["properties"]["tasks"]["items"]
    assert stub["name"] == "task"
    full = schemas.task_schema()["properties"]
    assert stub["properties"] == {k: v for k, v in full.items() if k not in {"input", "result", "message"}}
    listing = _sample("tasks_all.json")
    assert _errors(doc, listing) == []
    assert set(listing["tasks"][0]) <= set(stub["properties"])


# --- metadefs documents glanceclient caches at start-up --------------------------------------------


@pytest.mark.parametrize(
    ("name", "bundled"),
    [
        ("metadefs/namespace", glanceclient_namespace_schema.BASE_SCHEMA),
        ("metadefs/resource_type", glanceclient_resource_type_schema.BASE_SCHEMA),
    ],
)
def test_metadefs_documents_fit_glanceclient(name: str, bundled: dict[str, Any]) -> None:
    doc = schemas.SCHEMA_NAMES[name](DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS)
    assert doc["name"] == bundled["name"]
    assert doc["required"] == bundled["required"]
    assert doc["additionalProperties"] is False
    # Every property becomes a CLI option; glanceclient already builds options for all of these.
    assert set(doc["properties"]) <= set(bundled["properties"])
    for prop, spec in doc["properties"].items():
        assert spec.get("type") == bundled["properties"][prop].get("type"), prop
        assert spec.get("$ref") == bundled["properties"][prop].get("$ref"), prop
    assert set(doc.get("definitions", {})) == set(bundled.get("definitions", {}))


# --- python-glanceclient reads the documents --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(schemas.SCHEMA_NAMES))
def test_glanceclient_parses_every_document(name: str) -> None:
    doc = schemas.SCHEMA_NAMES[name](DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS)
    parsed = GlanceclientSchema(doc)
    assert parsed.name == doc["name"]
    assert {p.name for p in parsed.properties} == set(doc["properties"])


def _without_self(body: dict[str, Any]) -> dict[str, Any]:
    # glanceclient drops "self" before building a model: it would clash with the constructor's own.
    return {key: value for key, value in body.items() if key != "self"}


def test_glanceclient_image_model_accepts_an_uploaded_image() -> None:
    # images.create() validates the server's answer this way.
    model = warlock.model_factory(_sample_image_schema(), base_class=SchemaBasedModel)
    body = _without_self(_sample("image_after_upload.json"))
    assert model(**body)["disk_format"] == "raw"
    with pytest.raises(ValueError, match="floppy"):
        model(**{**body, "disk_format": "floppy"})


def test_glanceclient_task_model_accepts_a_task() -> None:
    # tasks.get() and tasks.list() validate the server's answers this way.
    model = warlock.model_factory(schemas.task_schema(), base_class=SchemaBasedModel)
    assert model(**_without_self(_sample("task_detail.json")))["status"] == "success"
    for stub in _sample("tasks_all.json")["tasks"]:
        assert model(**_without_self(stub))["type"] == "api_image_import"
