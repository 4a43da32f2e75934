"""``user_storage_quota`` through reservations: streamed data reserved a step at a time, a crashed
upload's reservation counted until it expires, and the housekeeping that deletes it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import anyio
from apitools import OCTET, OWNER, new_image
from starlette.testclient import TestClient

from glimpse.db.repositories import SqlRepositories
from glimpse.domain.quotas import Resource
from glimpse.jobs.housekeeping import expire_quota_reservations
from glimpse.runtime import Runtime

MIB = 1024 * 1024
QUOTA = 3 * MIB


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def hold(client: TestClient, holder: str, amount: int, *, expires_in: timedelta) -> None:
    """A reservation as an upload's process leaves it: nothing but the row."""
    runtime = runtime_of(client)
    now = runtime.clock()
    with runtime.uow() as session:
        SqlRepositories(session).quotas.hold(
            OWNER["X-Project-Id"], Resource.IMAGE_SIZE_TOTAL, holder, amount, now, now + expires_in
        )


def size_usage(client: TestClient) -> int:
    usage: int = client.get("/v2/info/usage").json()["usage"]["image_size_total"]["usage"]
    return usage


def test_streamed_data_is_refused_as_soon_as_a_step_does_not_fit(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(
        migrated_database_url, GLIMPSE_USER_STORAGE_QUOTA=str(QUOTA), GLIMPSE_QUOTA__RESERVATION_STEP="1MB"
    )

    def chunks(total: int) -> Iterator[bytes]:
        for _ in range(total // (MIB // 4)):
            yield b"x" * (MIB // 4)

    first, second = new_image(client), new_image(client)
    put = client.put(f"/v2/images/{first['id']}/file", content=chunks(2 * MIB + MIB // 2), headers=OCTET)
    assert put.status_code == 204, put.text
    refused = client.put(f"/v2/images/{second['id']}/file", content=chunks(MIB), headers=OCTET)
    assert refused.status_code == 413
    message = refused.json()["message"]
    assert "image_size_total is over limit" in message
    assert "still queued" in message
    image = client.get(f"/v2/images/{second['id']}").json()
    assert (image["status"], image["size"]) == ("queued", None)
    assert size_usage(client) == 2 * MIB + MIB // 2
    # Half a MiB is left, to the byte, in steps or announced.
    put = client.put(f"/v2/images/{second['id']}/file", content=chunks(MIB // 2), headers=OCTET)
    assert put.status_code == 204, put.text
    assert size_usage(client) == QUOTA


def test_a_crashed_uploads_reservation_counts_until_it_expires(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(migrated_database_url, GLIMPSE_USER_STORAGE_QUOTA=str(QUOTA))
    image = new_image(client)
    hold(client, "crashed-upload", QUOTA, expires_in=timedelta(minutes=5))
    assert size_usage(client) == QUOTA
    refused = client.put(f"/v2/images/{image['id']}/file", content=b"y" * 10, headers=OCTET)
    assert refused.status_code == 413
    assert "image_size_total is over limit" in refused.json()["message"]
    # Its process never renewed it: once expired, it no longer counts, and the sweep deletes it.
    hold(client, "crashed-upload", QUOTA, expires_in=timedelta(seconds=-1))
    assert size_usage(client) == 0
    assert client.put(f"/v2/images/{image['id']}/file", content=b"y" * 10, headers=OCTET).status_code == 204
    assert anyio.run(expire_quota_reservations, runtime_of(client)) == 1
    assert anyio.run(expire_quota_reservations, runtime_of(client)) == 0
    assert size_usage(client) == 10


def test_a_live_uploads_renewal_keeps_its_reservation(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(migrated_database_url, GLIMPSE_USER_STORAGE_QUOTA=str(QUOTA))
    hold(client, "slow-upload", MIB, expires_in=timedelta(seconds=-1))
    assert size_usage(client) == 0
    runtime = runtime_of(client)
    with runtime.uow() as session:
        SqlRepositories(session).quotas.renew("slow-upload", runtime.clock() + timedelta(minutes=5))
    assert size_usage(client) == MIB
    assert anyio.run(expire_quota_reservations, runtime) == 0
