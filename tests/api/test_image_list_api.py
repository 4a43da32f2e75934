"""GET /v2/images: visibility semantics, filters, sorting, paging."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from apitools import ADMIN, OTHER, OWNER, THIRD, new_image, upload
from starlette.testclient import TestClient


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [image["id"] for image in response.json()["images"]]


def test_empty_list_shape(client: TestClient) -> None:
    body = client.get("/v2/images").json()
    assert body == {"images": [], "first": "/v2/images", "schema": "/v2/schemas/images"}


def test_default_visibility_rules(client: TestClient) -> None:
    mine_private = new_image(client, visibility="private")["id"]
    mine_shared = new_image(client)["id"]
    mine_community = new_image(client, visibility="community")["id"]
    public = new_image(client, headers=ADMIN, visibility="public")["id"]
    theirs_private = new_image(client, headers=OTHER, visibility="private")["id"]
    theirs_community = new_image(client, headers=OTHER, visibility="community")["id"]
    theirs_shared = new_image(client, headers=OTHER)["id"]

    assert set(ids(client.get("/v2/images"))) == {mine_private, mine_shared, mine_community, public}
    assert set(ids(client.get("/v2/images?visibility=community"))) == {mine_community, theirs_community}
    assert set(ids(client.get("/v2/images?visibility=all"))) == {
        mine_private,
        mine_shared,
        mine_community,
        public,
        theirs_community,
    }
    assert set(ids(client.get("/v2/images?visibility=private"))) == {mine_private}
    assert set(ids(client.get("/v2/images?visibility=public"))) == {public}
    assert set(ids(client.get("/v2/images?visibility=shared"))) == {mine_shared}
    everything = {
        mine_private,
        mine_shared,
        mine_community,
        public,
        theirs_private,
        theirs_community,
        theirs_shared,
    }
    assert set(ids(client.get("/v2/images", headers=ADMIN))) == everything


def test_each_caller_sees_its_own_images_through_the_same_listing(client: TestClient) -> None:
    """The first page's statement is built once per shape and serves every caller: the project it
    is run for must be each request's own, in whatever order the callers come."""
    mine = new_image(client, visibility="private")["id"]
    theirs = new_image(client, headers=OTHER, visibility="private")["id"]
    for _ in range(2):
        assert ids(client.get("/v2/images?limit=5")) == [mine]
        assert ids(client.get("/v2/images?limit=5", headers=OTHER)) == [theirs]
        assert ids(client.get("/v2/images?limit=5", headers=THIRD)) == []
    assert set(ids(client.get("/v2/images?limit=5", headers=ADMIN))) == {mine, theirs}


def test_shared_images_follow_member_status(client: TestClient) -> None:
    shared = new_image(client, headers=OTHER)["id"]
    member = client.post(f"/v2/images/{shared}/members", json={"member": "project-a"}, headers=OTHER)
    assert member.status_code == 200
    assert shared not in ids(client.get("/v2/images"))
    assert shared in ids(client.get("/v2/images?member_status=pending"))
    assert shared in ids(client.get("/v2/images?visibility=shared&member_status=all"))
    accept = client.put(f"/v2/images/{shared}/members/project-a", json={"status": "accepted"})
    assert accept.status_code == 200
    assert shared in ids(client.get("/v2/images"))
    assert shared in ids(client.get("/v2/images?visibility=shared"))
    assert shared not in ids(client.get("/v2/images", headers=THIRD))


def test_hidden_images(client: TestClient) -> None:
    hidden = new_image(client, os_hidden=True)["id"]
    shown = new_image(client)["id"]
    assert ids(client.get("/v2/images")) == [shown]
    assert ids(client.get("/v2/images?os_hidden=true")) == [hidden]
    assert client.get("/v2/images?os_hidden=maybe").status_code == 400


def test_filters(client: TestClient) -> None:
    alpha = new_image(client, name="alpha", os_distro="ubuntu", tags=["gold", "x86"])["id"]
    # ami: a format no inspector knows, so any bytes are accepted as its data
    beta = new_image(client, name="beta", disk_format="ami", os_distro="debian", tags=["gold"])["id"]
    gamma = new_image(client, name="gamma", container_format="ovf")["id"]
    upload(client, alpha, b"a" * 100)
    upload(client, beta, b"b" * 5000)

    assert ids(client.get("/v2/images?name=alpha")) == [alpha]
    assert set(ids(client.get("/v2/images?name=in:alpha,gamma"))) == {alpha, gamma}
    assert set(ids(client.get('/v2/images?name=in:"alpha",beta'))) == {alpha, beta}
    assert ids(client.get("/v2/images?status=queued")) == [gamma]
    assert set(ids(client.get("/v2/images?status=in:active,queued"))) == {alpha, beta, gamma}
    assert ids(client.get("/v2/images?disk_format=ami")) == [beta]
    assert ids(client.get("/v2/images?container_format=ovf")) == [gamma]
    assert ids(client.get("/v2/images?size_min=1000")) == [beta]
    assert ids(client.get("/v2/images?size_max=1000")) == [alpha]
    assert ids(client.get("/v2/images?os_distro=debian")) == [beta]
    assert set(ids(client.get("/v2/images?tag=gold"))) == {alpha, beta}
    assert ids(client.get("/v2/images?tag=gold&tag=x86")) == [alpha]
    assert ids(client.get("/v2/images?owner=project-b")) == []
    assert set(ids(client.get(f"/v2/images?id=in:{alpha},{gamma}"))) == {alpha, gamma}


def test_time_filters(client: TestClient) -> None:
    first = new_image(client, name="first")
    created = first["created_at"]
    assert ids(client.get(f"/v2/images?created_at=lte:{created}")) == [first["id"]]
    assert ids(client.get("/v2/images?created_at=gt:2999-01-01T00:00:00Z")) == []
    assert ids(client.get("/v2/images?updated_at=gte:2000-01-01T00:00:00")) == [first["id"]]
    assert client.get("/v2/images?created_at=gt:yesterday").status_code == 400
    assert client.get("/v2/images?created_at=around:2020-01-01T00:00:00Z").status_code == 400


def test_sorting(client: TestClient) -> None:
    made = {
        name: new_image(client, name=name, min_ram=ram)["id"] for name, ram in [("b", 2), ("a", 3), ("c", 1)]
    }
    assert ids(client.get("/v2/images?sort_key=name&sort_dir=asc")) == [made["a"], made["b"], made["c"]]
    assert ids(client.get("/v2/images?sort=name:desc")) == [made["c"], made["b"], made["a"]]
    assert ids(client.get("/v2/images?sort=min_ram:asc,name")) == [made["c"], made["b"], made["a"]]
    assert ids(client.get("/v2/images?sort_key=min_ram&sort_key=name&sort_dir=desc&sort_dir=asc")) == [
        made["a"],
        made["b"],
        made["c"],
    ]


@pytest.mark.parametrize(
    "query",
    [
        "sort_key=color",
        "sort_dir=sideways",
        "sort=name:up",
        "sort=name&sort_key=name",
        "limit=-1",
        "limit=abc",
        "marker=not-a-uuid",
        "marker=00000000-0000-0000-0000-000000000000",
        "visibility=everyone",
        "member_status=maybe",
        "size_min=big",
        "status=sleeping",
        "sort_key=name&sort_key=name",
    ],
)
def test_bad_list_queries_are_400(client: TestClient, query: str) -> None:
    response = client.get(f"/v2/images?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["message"]


def _page_through(client: TestClient, url: str, headers: dict[str, str]) -> list[str]:
    seen: list[str] = []
    pages = 0
    while url:
        response = client.get(url, headers=headers)
        body = response.json()
        seen.extend(image["id"] for image in body["images"])
        url = body.get("next", "")
        pages += 1
        assert pages < 50
    return seen


@pytest.mark.parametrize("sort", ["", "&sort=name:asc", "&sort=size:desc,name:asc", "&sort_key=status"])
def test_paging_visits_every_image_once(client: TestClient, sort: str) -> None:
    created = []
    for i in range(11):
        image = new_image(client, name=None if i % 4 == 0 else f"n{i % 3}")
        if i % 3 == 0:
            upload(client, image["id"], b"x" * i)
        created.append(image["id"])
    seen = _page_through(client, f"/v2/images?limit=3{sort}", OWNER)
    assert sorted(seen) == sorted(created)
    assert len(seen) == len(set(seen))


def test_next_link_keeps_filters(client: TestClient) -> None:
    for _ in range(3):
        new_image(client, os_distro="x")
    new_image(client, os_distro="y")
    body = client.get("/v2/images?limit=2&os_distro=x").json()
    assert body["first"] == "/v2/images?limit=2&os_distro=x"
    query = parse_qs(urlparse(body["next"]).query)
    assert query["os_distro"] == ["x"]
    assert query["marker"] == [body["images"][-1]["id"]]
    assert len(_page_through(client, body["first"], OWNER)) == 3


def test_limit_is_capped(make_client: Any) -> None:
    client = make_client(GLIMPSE_API_LIMIT_MAX="2")
    for _ in range(3):
        new_image(client)
    assert len(ids(client.get("/v2/images?limit=100"))) == 2


def test_marker_of_invisible_image_is_rejected(client: TestClient) -> None:
    theirs = new_image(client, headers=OTHER, visibility="private")["id"]
    response = client.get(f"/v2/images?marker={theirs}")
    assert response.status_code == 400
