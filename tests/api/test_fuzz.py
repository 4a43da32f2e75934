"""Fuzzing the Image API: no request, generated or hand-made, may get a 5xx or leave half-written data.

Two halves:

* ``test_openapi_fuzz``: schemathesis reads the app's own ``GET /openapi.json`` and generates requests
  for every operation (schema-valid and schema-violating data, plus its coverage phase of boundary
  values), each sent in process to a freshly migrated SQLite app seeded with a few images. Path
  parameters (and the upload's store header) mostly name those images, their members, tags and
  stores, so requests get past the 404 into the code behind it; each example is sent as one of several
  callers, accepting one of several error body types. After each operation the app's database and
  stores must still be consistent.
* ``test_raw_bad_input``: requests the generator never produces (malformed JSON, wrong content types,
  huge headers, NUL characters, invalid UUIDs, a non-ASCII request id ...), each with the 4xx it must
  get; every case runs on SQLite and on PostgreSQL, whose column types are stricter.

The fuzz is bounded for CI: a fixed seed, derandomized generation, no example database, and
``MAX_EXAMPLES`` per operation; the whole module takes well under a minute on two cores.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from apitools import ADMIN, OTHER, OWNER, new_image, upload
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
)
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.api.schemas import SCHEMA_NAMES
from glimpse.config import load_settings
from glimpse.runtime import Runtime

MAX_EXAMPLES = 40
METADEF_EXAMPLES = 10
SEED = 20261125

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
# Both JSON-patch media types are JSON on the wire.
schemathesis.serializer.alias([PATCH_V21, PATCH_V20], "application/json")

# -- the seeded app ---------------------------------------------------------------------------------

QUEUED_ID = "0f0e0d0c-0000-4000-8000-000000000001"
BARE_ID = "0f0e0d0c-0000-4000-8000-000000000002"
ACTIVE_ID = "0f0e0d0c-0000-4000-8000-000000000003"
PROTECTED_ID = "0f0e0d0c-0000-4000-8000-000000000004"
DEACTIVATED_ID = "0f0e0d0c-0000-4000-8000-000000000005"
FOREIGN_ID = "0f0e0d0c-0000-4000-8000-000000000006"
PUBLIC_ID = "0f0e0d0c-0000-4000-8000-000000000007"
SEEDED_IDS = (QUEUED_ID, BARE_ID, ACTIVE_ID, PROTECTED_ID, DEACTIVATED_ID, FOREIGN_ID, PUBLIC_ID)
DATA = bytes(range(256)) * 8
#: Seeded metadata definitions: a public namespace and another project's private one, and the names of
#: the object, property, tag and resource type association in each.
METADEF_NAMESPACES = ("OS::Fuzz::Public", "OS::Fuzz::Theirs")
METADEF_NAMES = ("obj", "prop", "tag", "OS::Glance::Image")

#: Values that make a path parameter or header name something that exists in the seeded app.
KNOWN_VALUES: Mapping[str, tuple[str, ...]] = {
    "image_id": SEEDED_IDS,
    "member_id": ("project-a", "project-b", "project-c"),
    "tag": ("fuzz", "alpha"),
    "store_id": ("fast", "cheap", "reliable"),
    "name": (*sorted(SCHEMA_NAMES), *METADEF_NAMES),
    "namespace": METADEF_NAMESPACES,
    "x-image-meta-store": ("fast", "cheap", "reliable"),
    "range": ("bytes=0-0", "bytes=100-199", "bytes=2000-", "bytes=-10"),
}
#: Who sends each generated request: the three projects, an admin, and nobody (no-auth defaults).
IDENTITIES: tuple[Mapping[str, str], ...] = (OWNER, OWNER, OTHER, ADMIN, {})
#: Error bodies are negotiated (HTML, JSON or text), so vary what the client accepts.
ACCEPTS = ("application/json", "*/*", "text/plain", "text/html;q=0.1, application/json;q=0.9", "image/png")


def _seed(client: TestClient) -> None:
    """Images in every interesting state, owned by OWNER unless said otherwise."""
    new_image(client, id=QUEUED_ID, name="fuzz-queued", tags=["fuzz", "alpha"], fuzz_note="seeded")
    response = client.post("/v2/images", json={"id": BARE_ID}, headers=OWNER)
    assert response.status_code == 201, response.text
    new_image(client, id=ACTIVE_ID, name="fuzz-active", tags=["fuzz"])
    upload(client, ACTIVE_ID, DATA)
    response = client.post(f"/v2/images/{ACTIVE_ID}/members", json={"member": "project-b"}, headers=OWNER)
    assert response.status_code == 200, response.text
    new_image(client, id=PROTECTED_ID, protected=True, visibility="private")
    upload(client, PROTECTED_ID, DATA[:100], headers={**OWNER, "X-Image-Meta-Store": "cheap"})
    new_image(client, id=DEACTIVATED_ID)
    upload(client, DEACTIVATED_ID, DATA[:10])
    response = client.post(f"/v2/images/{DEACTIVATED_ID}/actions/deactivate", headers=OWNER)
    assert response.status_code == 204, response.text
    new_image(client, headers=OTHER, id=FOREIGN_ID, name="theirs")
    response = client.post(f"/v2/images/{FOREIGN_ID}/members", json={"member": "project-a"}, headers=OTHER)
    assert response.status_code == 200, response.text
    response = client.put(
        f"/v2/images/{FOREIGN_ID}/members/project-a", json={"status": "accepted"}, headers=OWNER
    )
    assert response.status_code == 200, response.text
    new_image(client, headers=ADMIN, id=PUBLIC_ID, visibility="public", os_distro="fuzz")
    upload(client, PUBLIC_ID, DATA[:1], headers=ADMIN)
    for namespace, visibility, owner in zip(
        METADEF_NAMESPACES, ("public", "private"), ("project-a", "project-b"), strict=True
    ):
        body = {
            "namespace": namespace,
            "visibility": visibility,
            "owner": owner,
            "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "fuzz_"}],
            "properties": {"prop": {"title": "P", "type": "string"}},
            "objects": [{"name": "obj", "properties": {"prop": {"title": "P", "type": "integer"}}}],
            "tags": [{"name": "tag"}],
        }
        response = client.post("/v2/metadefs/namespaces", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text


def _assert_consistent(runtime: Runtime) -> None:
    """Nothing half-written: no upload stuck mid-way, every active image's bytes are where it says."""
    problems: list[str] = []
    with runtime.engine.connect() as conn:
        images = conn.execute(
            sa.text("SELECT id, status, size, checksum FROM images WHERE deleted = :no"), {"no": False}
        ).all()
        locations = conn.execute(
            sa.text(
                "SELECT l.image_id, l.store_id, l.url FROM image_locations l "
                "JOIN images i ON i.id = l.image_id WHERE i.deleted = :no"
            ),
            {"no": False},
        ).all()
    by_image: dict[str, list[tuple[str, str]]] = {}
    for image_id, store_id, url in locations:
        by_image.setdefault(image_id, []).append((store_id, url))
    referenced: set[Path] = set()
    for image_id, status, size, checksum in images:
        if status == "saving":
            problems.append(f"image {image_id} was left 'saving'")
        if status in ("active", "deactivated"):
            if size is None or checksum is None or not by_image.get(image_id):
                problems.append(f"image {image_id} is {status} without size, checksum or location")
        elif by_image.get(image_id):
            problems.append(f"image {image_id} is {status} but has data locations")
        for store_id, url in by_image.get(image_id, []):
            path = Path(url.removeprefix("file://"))
            referenced.add(path)
            if not path.is_file() or path.stat().st_size != size:
                problems.append(f"image {image_id}: {url} in store {store_id} is missing or not {size} bytes")
    for store in runtime.settings.stores:
        if not store.datadir.is_dir():
            continue
        for entry in store.datadir.rglob("*"):
            if entry.is_file() and entry not in referenced:
                problems.append(f"store {store.id} holds {entry.name}, which no image refers to")
    assert not problems, "inconsistent state after fuzzing:\n" + "\n".join(problems)


def _runtime(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


@pytest.fixture
def seeded(make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    """A fresh SQLite app with the seed images; checked for consistency when the test is done."""
    client = make_client()
    _seed(client)
    yield client
    _assert_consistent(_runtime(client))


# -- the generated fuzz ------------------------------------------------------------------------------


def _openapi_document() -> dict[str, Any]:
    """``GET /openapi.json`` of an app built for the purpose (the document needs no database)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            environ={
                "GLIMPSE_DATA_DIR": os.path.join(tmp, "data"),
                "GLIMPSE_DATABASE__CONNECTION": f"sqlite:///{tmp}/openapi.db",
            }
        )
        runtime = Runtime.build(settings)
        try:
            response = TestClient(create_app(runtime)).get("/openapi.json")
        finally:
            runtime.close()
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        # The many metadefs operations share one loading path and one body parser: fewer examples
        # each keep the module fast.
        "operations": [
            {
                "include-path-regex": "^/v2/metadefs/",
                "generation": {"max-examples": METADEF_EXAMPLES},
            }
        ],
    }
)
schema = schemathesis.openapi.from_dict(_openapi_document(), config=CONFIG)


def _prefer_known(parameters: Any) -> st.SearchStrategy[Any]:
    """Keep the generated value of each parameter a quarter of the time; else name something that exists."""
    if not isinstance(parameters, dict):
        return st.just(parameters)
    choices = {
        name: st.one_of(st.just(value), *[st.sampled_from(KNOWN_VALUES[name])] * 3)
        for name, value in parameters.items()
        if name in KNOWN_VALUES
    }
    return st.fixed_dictionaries(choices).map(lambda known: {**parameters, **known})


@schema.hook
def before_generate_path_parameters(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy.flatmap(_prefer_known)


@schema.hook
def before_generate_headers(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy.flatmap(_prefer_known)


@schema.hook
def flatmap_case(context: Any, case: schemathesis.Case) -> st.SearchStrategy[schemathesis.Case]:
    """Each generated request comes from one of the identities, accepting one of the error body types."""

    def sent_as(identity: Mapping[str, str], accept: str) -> schemathesis.Case:
        case.headers = {**(case.headers or {}), **identity, "Accept": accept}
        return case

    return st.builds(sent_as, st.sampled_from(IDENTITIES), st.sampled_from(ACCEPTS))


@schema.parametrize()
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_openapi_fuzz(case: schemathesis.Case, seeded: TestClient) -> None:
    # One seeded app per operation, shared by its examples on purpose: state accumulates as on a real
    # server, and the consistency check at teardown covers everything they did. Cases of the coverage
    # phase do not go through the hooks, so they carry no identity: they are sent as OWNER.
    case.call_and_validate(
        app=seeded.app,
        headers=None if case.headers else dict(OWNER),
        checks=[not_a_server_error, content_type_conformance, response_headers_conformance],
    )


# -- raw bad input -----------------------------------------------------------------------------------

JSON = {"Content-Type": "application/json"}
PATCH_JSON = {"Content-Type": PATCH_V21}
NUL_IN_URL = "NUL character (%00)"


@dataclass(frozen=True)
class Raw:
    """One hand-made request and the answer it must get (``message`` is part of the error message)."""

    method: str
    path: str
    status: int
    message: str = ""
    headers: Mapping[str, str | bytes] = field(default_factory=dict)
    body: bytes | None = None


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


RAW_CASES: dict[str, Raw] = {
    # Bodies that are not the JSON they claim to be.
    "json-truncated": Raw("POST", "/v2/images", 400, "Malformed JSON", JSON, b'{"name": '),
    "json-not-utf8": Raw("POST", "/v2/images", 400, "Malformed JSON", JSON, b'{"name": "\xff\xfe"}'),
    "json-utf16": Raw("POST", "/v2/images", 400, "Malformed JSON", JSON, '{"name": "x"}'.encode("utf-16")),
    "json-nan": Raw("POST", "/v2/images", 400, "Malformed JSON", JSON, b'{"min_ram": NaN}'),
    "json-lone-surrogate": Raw("POST", "/v2/images", 400, "Malformed JSON", JSON, b'{"name": "\\ud800"}'),
    "json-deep-nesting": Raw("POST", "/v2/images", 400, "depth limit", JSON, b"[" * 100_000 + b"]" * 100_000),
    "json-array": Raw("POST", "/v2/images", 400, "must be a JSON object", JSON, b'["name"]'),
    "json-empty": Raw("POST", "/v2/images", 400, "Body expected", JSON, b""),
    "json-over-1mib": Raw("POST", "/v2/images", 413, "larger than", JSON, b" " * (1024 * 1024 + 1)),
    "int-beyond-64-bits": Raw(
        "POST", "/v2/images", 400, "min_ram", JSON, b'{"min_ram": 99999999999999999999}'
    ),
    "int-beyond-32-bits": Raw(
        "POST", "/v2/images", 400, "from 0 to 2147483647", JSON, _json({"min_disk": 2**31})
    ),
    "id-not-a-string": Raw("POST", "/v2/images", 400, "'id' must be a UUID", JSON, _json({"id": 5})),
    "id-trailing-newline": Raw(
        "POST", "/v2/images", 400, "not a valid UUID", JSON, _json({"id": QUEUED_ID[:-1] + "9\n"})
    ),
    # Bodies sent as the wrong media type.
    "create-as-text": Raw("POST", "/v2/images", 415, "text/plain", {"Content-Type": "text/plain"}, b"{}"),
    "patch-as-json": Raw("PATCH", f"/v2/images/{QUEUED_ID}", 415, "json-patch", JSON, b"[]"),
    "patch-as-form": Raw(
        "PATCH",
        f"/v2/images/{QUEUED_ID}",
        415,
        "",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"a=b",
    ),
    "upload-as-json": Raw("PUT", f"/v2/images/{QUEUED_ID}/file", 415, "octet-stream", JSON, b"{}"),
    "member-as-form": Raw(
        "POST",
        f"/v2/images/{ACTIVE_ID}/members",
        415,
        "application/x-www-form-urlencoded",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"member=project-b",
    ),
    # JSON-patch documents that are JSON but not patches.
    "patch-pointer-without-slash": Raw(
        "PATCH",
        f"/v2/images/{QUEUED_ID}",
        400,
        "JSON pointer",
        PATCH_JSON,
        _json([{"op": "add", "path": "a", "value": "x"}]),
    ),
    "patch-v20-two-operations": Raw(
        "PATCH",
        f"/v2/images/{QUEUED_ID}",
        400,
        "exactly one of",
        {"Content-Type": PATCH_V20},
        _json([{"add": "/a", "replace": "/b", "value": "x"}]),
    ),
    "patch-property-nul": Raw(
        "PATCH",
        f"/v2/images/{QUEUED_ID}",
        400,
        "NUL",
        PATCH_JSON,
        _json([{"op": "add", "path": "/k", "value": "a\0b"}]),
    ),
    "patch-min-ram-32-bits": Raw(
        "PATCH",
        f"/v2/images/{QUEUED_ID}",
        400,
        "from 0 to 2147483647",
        PATCH_JSON,
        _json([{"op": "replace", "path": "/min_ram", "value": 2**31}]),
    ),
    # NUL characters, which PostgreSQL cannot store, in bodies and URLs.
    "name-nul": Raw("POST", "/v2/images", 400, "NUL", JSON, _json({"name": "a\0b"})),
    "property-name-nul": Raw("POST", "/v2/images", 400, "NUL", JSON, _json({"k\0": "v"})),
    "tag-nul": Raw("POST", "/v2/images", 400, "NUL", JSON, _json({"tags": ["a\0"]})),
    "member-nul": Raw("POST", f"/v2/images/{ACTIVE_ID}/members", 400, "NUL", JSON, _json({"member": "\0"})),
    "member-id-nul-in-path": Raw("DELETE", f"/v2/images/{ACTIVE_ID}/members/project-b%00", 400, NUL_IN_URL),
    "tag-nul-in-path": Raw("PUT", f"/v2/images/{QUEUED_ID}/tags/a%00b", 400, NUL_IN_URL),
    "filter-nul": Raw("GET", "/v2/images?name=%00", 400, NUL_IN_URL),
    # Bodies on requests that take none.
    "get-with-body": Raw("GET", "/v2/images", 400, "takes no body", JSON, _json({})),
    "delete-with-body": Raw("DELETE", f"/v2/images/{QUEUED_ID}", 400, "takes no body", JSON, _json({})),
    # Image ids that are not UUIDs.
    "image-id-not-uuid": Raw("GET", "/v2/images/not-a-uuid", 404, "No image found"),
    "image-id-trailing-newline": Raw("GET", f"/v2/images/{QUEUED_ID}%0A", 404, "No image found"),
    "image-id-too-long": Raw("DELETE", f"/v2/images/{QUEUED_ID * 100}", 404, "No image found"),
    "marker-not-uuid": Raw("GET", "/v2/images?marker=1%27%20OR%201=1", 400, "Invalid marker"),
    "members-of-non-uuid": Raw("GET", "/v2/images/..%2F..%2Fetc/members", 404, ""),
    # Query values out of range.
    "size-min-beyond-64-bits": Raw("GET", f"/v2/images?size_min={2**63}", 400, "at most"),
    "min-ram-filter-beyond-64-bits": Raw("GET", f"/v2/images?min_ram={10**30}", 400, "at most"),
    "size-filter-beyond-64-bits": Raw("GET", f"/v2/images?size=gt:{10**30}", 400, "at most"),
    "int-of-5000-digits": Raw("GET", "/v2/images?size_max=" + "9" * 5000, 400, "must be an integer"),
    "created-at-before-year-1": Raw(
        "GET", "/v2/images?created_at=gt:0001-01-01T00:00:00%2B14:00", 400, "outside the years"
    ),
    "updated-at-after-year-9999": Raw(
        "GET", "/v2/images?updated_at=lt:9999-12-31T23:59:59-23:59", 400, "outside the years"
    ),
    # Headers: huge, non-ASCII, NUL, malformed.
    "request-id-non-ascii": Raw(
        "GET", "/v2/images", 400, "printable ASCII", {"X-OpenStack-Request-ID": "req-é".encode()}
    ),
    "request-id-too-long": Raw("GET", "/v2/images", 400, "too long", {"X-OpenStack-Request-ID": "r" * 65}),
    "project-id-huge": Raw("GET", "/v2/images", 400, "longer than 255", {"X-Project-Id": "p" * 10_000}),
    "project-id-nul": Raw("GET", "/v2/images", 400, "NUL", {"X-Project-Id": b"a\x00b"}),
    "roles-huge": Raw("GET", "/v2/images", 200, "", {"X-Roles": "member,reader," + "other," * 20_000}),
    "accept-garbage": Raw("GET", "/v2/images/x", 404, "", {"Accept": "q=;;,*/*;q=nan,text/html;q=inf"}),
    "range-two-ranges": Raw("GET", f"/v2/images/{ACTIVE_ID}/file", 400, "Range", {"Range": "bytes=0-1,4-5"}),
    "range-inverted": Raw("GET", f"/v2/images/{ACTIVE_ID}/file", 400, "Range", {"Range": "bytes=9-3"}),
    "range-beyond-64-bits": Raw(
        "GET", f"/v2/images/{ACTIVE_ID}/file", 416, "", {"Range": f"bytes={10**30}-"}
    ),
    "upload-to-unknown-store": Raw(
        "PUT",
        f"/v2/images/{QUEUED_ID}/file",
        400,
        "not enabled",
        {"Content-Type": "application/octet-stream", "X-Image-Meta-Store": "../../etc"},
        b"data",
    ),
    # URLs outside the API.
    "version-out-of-range": Raw("GET", "/v2.13/images", 404, "no route"),
    "method-not-allowed": Raw("PUT", "/v2/images", 405, "not allowed"),
}


def _snapshot(runtime: Runtime) -> tuple[object, ...]:
    """Everything a request could have written: every table's rows and every stored file."""
    with runtime.engine.connect() as conn:
        tables = tuple(
            sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {table}")).all()), key=repr)  # noqa: S608
            for table in ("images", "image_properties", "image_tags", "image_members", "image_locations")
        )
    files = sorted(
        (str(path), path.stat().st_size) for path in runtime.settings.data_dir.rglob("*") if path.is_file()
    )
    return (*tables, tuple(files))


@pytest.mark.parametrize("raw", list(RAW_CASES.values()), ids=list(RAW_CASES))
def test_raw_bad_input(raw: Raw, client: TestClient) -> None:
    """Input the generator never makes gets the expected status and a message, and changes nothing."""
    new_image(client, id=QUEUED_ID)
    new_image(client, id=ACTIVE_ID)
    upload(client, ACTIVE_ID, DATA)
    runtime = _runtime(client)
    before = _snapshot(runtime)

    response = client.request(
        raw.method,
        raw.path,
        content=raw.body,
        headers={**OWNER, "Accept": "application/json", **raw.headers},
    )

    assert response.status_code == raw.status, response.text
    assert response.headers["x-openstack-request-id"].startswith("req-")
    if response.status_code >= 400:
        # Error bodies follow Accept: JSON as asked for, HTML or text when a row sends its own Accept.
        if response.headers["content-type"].startswith("application/json"):
            body = response.json()
            assert body["code"].startswith(str(raw.status)), body
            message = body["message"]
        else:
            message = response.text
        assert raw.message in message, message
    assert _snapshot(runtime) == before, "a rejected request changed stored data"
