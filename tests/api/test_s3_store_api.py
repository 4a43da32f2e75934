"""Images in an S3 store through the API (in process), against the Swift + s3api test server."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.config
import pytest
from apitools import ADMIN, OCTET, new_image
from starlette.testclient import TestClient

from objectsupport import ObjectServer

pytestmark = pytest.mark.objects

MiB = 1024 * 1024


@pytest.fixture
def bucket(s3_server: ObjectServer) -> Iterator[tuple[str, Any]]:
    name = f"glimpse-api-{uuid.uuid4().hex[:16]}"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_server.s3_endpoint_url,
        aws_access_key_id=s3_server.s3_access_key,
        aws_secret_access_key=s3_server.s3_secret_key,
        config=botocore.config.Config(region_name=s3_server.s3_region, s3={"addressing_style": "path"}),
    )
    yield name, client
    try:
        for item in client.list_objects_v2(Bucket=name).get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)
    except client.exceptions.NoSuchBucket:
        pass


def s3_settings(server: ObjectServer, bucket: str, **extra: str) -> dict[str, str]:
    return {
        "GLIMPSE_ENABLED_BACKENDS": "fast:file,big:s3",
        "GLIMPSE_BIG__S3_STORE_HOST": server.s3_endpoint_url,
        "GLIMPSE_BIG__S3_STORE_ACCESS_KEY": server.s3_access_key,
        "GLIMPSE_BIG__S3_STORE_SECRET_KEY": server.s3_secret_key,
        "GLIMPSE_BIG__S3_STORE_BUCKET": bucket,
        "GLIMPSE_BIG__S3_STORE_CREATE_BUCKET_ON_PUT": "true",
        "GLIMPSE_BIG__S3_STORE_LARGE_OBJECT_SIZE": "5",
        "GLIMPSE_BIG__S3_STORE_LARGE_OBJECT_CHUNK_SIZE": "5",
        "GLIMPSE_BIG__S3_STORE_BUCKET_URL_FORMAT": "path",
        "GLIMPSE_BIG__STORE_DESCRIPTION": "Object storage",
        **extra,
    }


def test_upload_download_and_delete_in_the_s3_store(
    make_client: Callable[..., TestClient], s3_server: ObjectServer, bucket: tuple[str, Any]
) -> None:
    name, s3 = bucket
    api = make_client(**s3_settings(s3_server, name, GLIMPSE_GLANCE_STORE__DEFAULT_BACKEND="big"))
    data = random.Random(5).randbytes(12 * MiB + 3)  # more than 5 MB: a multipart upload of 3 parts

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    image = new_image(api)["id"]
    response = api.put(f"/v2/images/{image}/file", content=chunks(), headers=OCTET)
    assert response.status_code == 204, response.text

    shown = api.get(f"/v2/images/{image}", headers=ADMIN).json()
    assert shown["stores"] == "big"
    assert shown["size"] == len(data)
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert s3.head_object(Bucket=name, Key=image)["ContentLength"] == len(data)
    assert s3.head_object(Bucket=name, Key=image)["ETag"].strip('"').endswith("-3")

    assert api.get(f"/v2/images/{image}/file").content == data
    ranged = api.get(f"/v2/images/{image}/file", headers={"Range": "bytes=7340032-7340099"})
    assert ranged.status_code == 206
    assert ranged.content == data[7340032:7340100]

    stores = {store["id"]: store for store in api.get("/v2/info/stores").json()["stores"]}
    assert stores["big"] == {"id": "big", "description": "Object storage", "default": "true"}

    assert api.delete(f"/v2/images/{image}").status_code == 204
    assert s3.list_objects_v2(Bucket=name).get("Contents", []) == []
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == []


def test_refused_credentials_are_a_503_that_says_what_to_check(
    make_client: Callable[..., TestClient], s3_server: ObjectServer, bucket: tuple[str, Any]
) -> None:
    name, s3 = bucket
    api = make_client(**s3_settings(s3_server, name, GLIMPSE_BIG__S3_STORE_SECRET_KEY="wrong"))
    image = new_image(api)["id"]

    response = api.put(
        f"/v2/images/{image}/file", content=b"x" * 1000, headers={**OCTET, "X-Image-Meta-Store": "big"}
    )

    assert response.status_code == 503, response.text
    assert "check s3_store_access_key and s3_store_secret_key" in response.text
    assert "wrong" not in response.text
    shown = api.get(f"/v2/images/{image}").json()
    assert shown["status"] == "queued"
    assert s3.list_buckets().get("Buckets") is not None
