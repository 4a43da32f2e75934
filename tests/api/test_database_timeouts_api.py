"""A database server whose packets stop coming back: a relay between Glimpse and the real
PostgreSQL or MariaDB server freezes in the middle of the pooled connections' traffic (it still takes
the bytes sent to it, and new connections, but forwards nothing either way), as a host that drops
packets does. Without timeouts every request would wait forever; with ``[database] read_timeout``
and ``connect_timeout`` each one answers 503 within them, and the service heals once the relay
forwards again."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from livesupport import wait_until
from tcprelay import TcpRelay

#: Seconds the test gives each timeout; a request may meet both (the pool's ping of a pooled
#: connection, then a new connection), plus scheduling on a loaded machine.
READ_TIMEOUT = 2
CONNECT_TIMEOUT = 2
WITHIN = 2 * (READ_TIMEOUT + CONNECT_TIMEOUT) + 4


@pytest.fixture
def relayed_database(migrated_database_url: str) -> Iterator[tuple[str, TcpRelay]]:
    """The test's database, reached through a relay the test can freeze."""
    url = sa.make_url(migrated_database_url)
    assert url.host
    assert url.port
    with TcpRelay(url.host, url.port) as relay:
        yield url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), relay


@pytest.mark.postgres
@pytest.mark.mariadb
@pytest.mark.parametrize("database_backend", ["postgresql", "mariadb"], indirect=True)
def test_a_database_that_stops_answering_gives_503s_within_the_timeouts_then_heals(
    make_client: Callable[..., TestClient], relayed_database: tuple[str, TcpRelay]
) -> None:
    url, relay = relayed_database
    client = make_client(
        url,
        GLIMPSE_DATABASE__READ_TIMEOUT=str(READ_TIMEOUT),
        GLIMPSE_DATABASE__CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
    )
    created = client.post(
        "/v2/images", json={"name": "kept", "disk_format": "raw", "container_format": "bare"}
    )
    assert created.status_code == 201, created.text
    kept = created.json()["id"]
    assert client.get("/v2/images").status_code == 200  # the pool holds connections through the relay

    relay.pause()
    for method, path in (("GET", "/v2/images"), ("GET", f"/v2/images/{kept}"), ("POST", "/v2/images")):
        began = time.monotonic()
        body = {"disk_format": "raw", "container_format": "bare"} if method == "POST" else None
        answer = client.request(method, path, json=body)
        took = time.monotonic() - began
        assert answer.status_code == 503, answer.text
        message = answer.json()["message"]
        assert "The database cannot be reached right now" in message, message
        assert "try again" in message, message
        assert took < WITHIN, f"{method} {path} took {took:.1f}s"
    assert client.get("/healthcheck").status_code == 503

    relay.resume()
    wait_until(
        lambda: client.get("/v2/images").status_code == 200, lambda: "no 200 after the relay resumed", 30
    )
    listed = client.get("/v2/images").json()["images"]
    assert [image["id"] for image in listed] == [kept]
    again = client.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
    assert again.status_code == 201, again.text
