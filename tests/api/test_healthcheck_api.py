"""``GET``/``HEAD /healthcheck``: oslo.middleware's answers, no authentication, and a 503 naming what
to check when the database or the default store cannot be used (real faults: a database behind a
relay that is cut or hangs, a store directory that is not a directory, a bucket that is missing)."""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from starlette.testclient import TestClient

from objectsupport import ObjectServer
from tcprelay import TcpRelay


def _health(client: TestClient, accept: str = "text/plain") -> Any:
    return client.get("/healthcheck", headers={"Accept": accept})


def test_healthy_node_answers_like_oslo_middleware(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(migrated_database_url)
    plain = _health(client)
    assert (plain.status_code, plain.text) == (200, "OK")
    assert plain.headers["content-type"].startswith("text/plain")
    assert plain.headers["cache-control"] == "no-store"
    head = client.head("/healthcheck")
    assert (head.status_code, head.content) == (204, b"")
    document = _health(client, "application/json")
    assert document.status_code == 200
    assert document.json() == {"detailed": False, "reasons": ["OK"]}


def test_no_identity_is_needed_even_with_keystone(make_client: Callable[..., TestClient]) -> None:
    client = make_client(
        GLIMPSE_AUTH_STRATEGY="keystone",
        GLIMPSE_KEYSTONE_AUTHTOKEN__WWW_AUTHENTICATE_URI="http://127.0.0.1:9/identity",
        GLIMPSE_KEYSTONE_AUTHTOKEN__AUTH_URL="http://127.0.0.1:9/identity",
        GLIMPSE_KEYSTONE_AUTHTOKEN__AUTH_TYPE="password",
    )
    assert client.get("/v2/images").status_code in (401, 503)  # the API itself wants a token
    answer = client.get("/healthcheck", headers={"Accept": "text/plain"})
    assert (answer.status_code, answer.text) == (200, "OK")


def test_detailed_json_names_each_check(make_client: Callable[..., TestClient]) -> None:
    client = make_client(GLIMPSE_HEALTHCHECK__DETAILED="true")
    body = _health(client, "application/json").json()
    assert body["detailed"] is True
    assert body["reasons"] == ["OK"]
    assert [(c["name"], c["ok"]) for c in body["checks"]] == [("database", True), ("store 'fast'", True)]
    assert all(0 <= c["seconds"] < 2 for c in body["checks"])


def test_disable_by_file_takes_the_node_out(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    flag = tmp_path / "healthcheck_disable"
    client = make_client(GLIMPSE_HEALTHCHECK__DISABLE_BY_FILE_PATH=str(flag))
    assert _health(client).status_code == 200
    flag.touch()
    answer = _health(client)
    assert (answer.status_code, answer.text) == (503, "DISABLED BY FILE")
    assert client.head("/healthcheck").status_code == 503
    flag.unlink()
    assert _health(client).status_code == 200


def test_default_store_directory_unusable_is_503(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    datadir = tmp_path / "fast-store"
    client = make_client(GLIMPSE_FAST__FILESYSTEM_STORE_DATADIR=str(datadir))
    assert _health(client).status_code == 200  # missing is fine: the first write creates it
    datadir.write_bytes(b"not a directory")  # what an unmounted or broken mount point can look like
    answer = _health(client)
    assert answer.status_code == 503
    assert (
        answer.text
        == "store 'fast' could not reach its data directory: its data directory is not a directory"
    )
    assert str(datadir) not in answer.text
    datadir.unlink()
    datadir.mkdir()
    assert _health(client).status_code == 200


@pytest.fixture
def relayed_database(migrated_database_url: str) -> Iterator[tuple[str, TcpRelay]]:
    """The test's PostgreSQL database, reached through a relay the test can cut or hang."""
    url = urllib.parse.urlsplit(migrated_database_url)
    assert url.hostname
    assert url.port
    with TcpRelay(url.hostname, url.port) as relay:
        relayed = url._replace(netloc=f"{url.username}@127.0.0.1:{relay.port}").geturl()
        yield relayed, relay


@pytest.mark.postgres
@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
def test_database_unreachable_then_back(
    make_client: Callable[..., TestClient], relayed_database: tuple[str, TcpRelay]
) -> None:
    url, relay = relayed_database
    client = make_client(url, GLIMPSE_HEALTHCHECK__TIMEOUT="1")
    assert _health(client).status_code == 200
    relay.stop()
    answer = _health(client)
    assert answer.status_code == 503
    assert answer.text == (
        "database failed (DatabaseUnavailable); check [database] connection and that the database "
        "server is up."
    )
    relay.start()
    assert _health(client).status_code == 200


@pytest.mark.postgres
@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
def test_hung_database_is_503_within_the_timeout(
    make_client: Callable[..., TestClient], relayed_database: tuple[str, TcpRelay]
) -> None:
    url, relay = relayed_database
    client = make_client(url, GLIMPSE_HEALTHCHECK__TIMEOUT="0.5")
    assert _health(client).status_code == 200
    relay.pause()
    for _ in range(2):  # the second request finds the first probe still hanging
        began = time.monotonic()
        answer = _health(client)
        assert answer.status_code == 503
        assert answer.text.startswith("database did not answer within 0.5 s; check [database] connection")
        assert time.monotonic() - began < 3
    relay.resume()
    deadline = time.monotonic() + 10
    while _health(client).status_code != 200:
        assert time.monotonic() < deadline, "the health check did not recover after the database did"
        time.sleep(0.1)


@pytest.mark.objects
def test_default_s3_store_without_its_bucket_is_503(
    make_client: Callable[..., TestClient], s3_server: ObjectServer
) -> None:
    bucket = f"glimpse-health-{uuid.uuid4().hex[:12]}"
    client = make_client(
        GLIMPSE_ENABLED_BACKENDS="objects:s3",
        GLIMPSE_GLANCE_STORE__DEFAULT_BACKEND="objects",
        GLIMPSE_OBJECTS__S3_STORE_HOST=s3_server.s3_endpoint_url,
        GLIMPSE_OBJECTS__S3_STORE_ACCESS_KEY=s3_server.s3_access_key,
        GLIMPSE_OBJECTS__S3_STORE_SECRET_KEY=s3_server.s3_secret_key,
        GLIMPSE_OBJECTS__S3_STORE_BUCKET=bucket,
        GLIMPSE_OBJECTS__S3_STORE_BUCKET_URL_FORMAT="path",
    )
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_server.s3_endpoint_url,
        aws_access_key_id=s3_server.s3_access_key,
        aws_secret_access_key=s3_server.s3_secret_key,
        config=botocore.config.Config(region_name=s3_server.s3_region, s3={"addressing_style": "path"}),
    )
    missing = _health(client)
    assert missing.status_code == 503
    assert missing.text == (
        "store 'objects' could not reach its bucket: it does not exist; create it or set "
        "s3_store_create_bucket_on_put = true."
    )
    s3.create_bucket(Bucket=bucket)
    try:
        assert _health(client).status_code == 200
    finally:
        s3.delete_bucket(Bucket=bucket)
    assert _health(client).status_code == 503  # removed again


def test_store_probe_leaves_no_trace(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    datadir = tmp_path / "probe-store"
    client = make_client(GLIMPSE_FAST__FILESYSTEM_STORE_DATADIR=str(datadir))
    for _ in range(3):
        assert _health(client).status_code == 200
    assert not datadir.exists()
