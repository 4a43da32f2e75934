"""``auth_strategy = keystone``: a live ``glimpse-server`` validating tokens against a real Keystone itself.

No proxy in front: the server's own keystonemiddleware ``auth_token`` checks ``X-Auth-Token`` and
``X-Service-Token`` (``glimpse.api.auth``). Keystone is the ``keystone`` package on loopback
(``keystonesupport``); tokens are password, application-credential, project- and system-scoped.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from keystonesupport import ADMIN_PASSWORD, CACHE_TIME, Account, KeystoneServer, protected_server
from secretcheck import leaks_in, register_secret

pytestmark = pytest.mark.live

PASSWORD = "s3cret"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    with KeystoneServer(tmp_path_factory.getbasetemp().parent, tmp_path_factory.mktemp("keystone")) as ks:
        yield ks


@pytest.fixture(scope="module")
def glimpse(keystone: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server = protected_server(tmp_path_factory.mktemp("glimpse-keystone"), keystone)
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            yield client
    finally:
        server.stop()


def account(keystone: KeystoneServer, *roles: str) -> Account:
    return keystone.account(f"{'-'.join(roles)}-{next(_names)}", PASSWORD, roles)


def token_of(keystone: KeystoneServer, who: Account) -> str:
    return keystone.token(who.user_name, who.password, who.project_name)


def new_image(client: httpx.Client, token: str, **fields: object) -> dict[str, object]:
    body = {"name": "k", "disk_format": "raw", "container_format": "bare", **fields}
    response = client.post("/v2/images", json=body, headers={"X-Auth-Token": token})
    assert response.status_code == 201, response.text
    image: dict[str, object] = response.json()
    return image


def test_the_version_documents_stay_open(glimpse: httpx.Client) -> None:
    assert glimpse.get("/versions").status_code == 200
    assert glimpse.get("/").status_code == 300


@pytest.mark.parametrize("token", [None, "not-a-token", "gAAAAABn" + "x" * 180])
def test_no_token_or_a_bad_one_is_401_with_the_keystone_challenge(
    glimpse: httpx.Client, keystone: KeystoneServer, token: str | None
) -> None:
    headers = {"Accept": "application/json", **({"X-Auth-Token": token} if token else {})}
    response = glimpse.get("/v2/images", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.url}"'
    assert "token" in response.json()["message"]
    # Also on routes that take no identity from the handler, such as the schemas.
    assert glimpse.get("/v2/schemas/image", headers=headers).status_code == 401


def test_a_password_token_acts_as_its_project_and_the_task_keeps_the_user(
    glimpse: httpx.Client, keystone: KeystoneServer
) -> None:
    member = account(keystone, "member", "reader")
    token = token_of(keystone, member)
    image = new_image(glimpse, token)
    assert image["owner"] == member.project_id
    listed = glimpse.get("/v2/images", headers={"X-Auth-Token": token}).json()["images"]
    assert [i["id"] for i in listed] == [image["id"]]
    # The import task records the token's user and the request id.
    headers = {"X-Auth-Token": token}
    staged = glimpse.put(
        f"/v2/images/{image['id']}/stage",
        content=b"k" * 1024,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert staged.status_code == 204, staged.text
    started = glimpse.post(
        f"/v2/images/{image['id']}/import", json={"method": {"name": "glance-direct"}}, headers=headers
    )
    assert started.status_code == 202, started.text
    tasks = glimpse.get(f"/v2/images/{image['id']}/tasks", headers=headers).json()["tasks"]
    assert [(t["user_id"], t["request_id"]) for t in tasks] == [
        (member.user_id, started.headers["X-Openstack-Request-Id"])
    ]


def test_an_application_credential_token_acts_as_its_project(
    glimpse: httpx.Client, keystone: KeystoneServer
) -> None:
    member = account(keystone, "member", "reader")
    credential_id, secret = keystone.application_credential(member, "ci")
    token = keystone.application_credential_token(credential_id, secret)
    assert new_image(glimpse, token)["owner"] == member.project_id


def test_another_projects_token_sees_nothing_and_a_reader_cannot_write(
    glimpse: httpx.Client, keystone: KeystoneServer
) -> None:
    owner = account(keystone, "member", "reader")
    image = new_image(glimpse, token_of(keystone, owner))
    other = {"X-Auth-Token": token_of(keystone, account(keystone, "member", "reader"))}
    assert glimpse.get(f"/v2/images/{image['id']}", headers=other).status_code == 404
    assert glimpse.delete(f"/v2/images/{image['id']}", headers=other).status_code == 404
    assert glimpse.get("/v2/images", headers=other).json()["images"] == []
    reader = {"X-Auth-Token": token_of(keystone, account(keystone, "reader"))}
    refused = glimpse.post(
        "/v2/images",
        json={"name": "no", "disk_format": "raw", "container_format": "bare"},
        headers={**reader, "Accept": "application/json"},
    )
    assert refused.status_code == 403
    assert "add_image" in refused.json()["message"]


def test_project_admin_sees_every_project_and_a_system_token_is_refused_by_scope(
    glimpse: httpx.Client, keystone: KeystoneServer
) -> None:
    image = new_image(glimpse, token_of(keystone, account(keystone, "member", "reader")))
    admin = {"X-Auth-Token": keystone.token("admin", ADMIN_PASSWORD, "admin")}
    assert glimpse.get(f"/v2/images/{image['id']}", headers=admin).status_code == 200
    # Image rules accept project-scoped tokens only ([oslo_policy] enforce_scope, on by default).
    system = {"X-Auth-Token": keystone.token("admin", ADMIN_PASSWORD, None), "Accept": "application/json"}
    listed = glimpse.get("/v2/images", headers=system)
    assert listed.status_code == 403
    assert "system-scoped token" in listed.json()["message"]
    assert glimpse.get(f"/v2/images/{image['id']}", headers=system).status_code == 404


def test_a_revoked_token_stops_working_within_the_cache_time(
    glimpse: httpx.Client, keystone: KeystoneServer
) -> None:
    token = token_of(keystone, account(keystone, "member", "reader"))
    headers = {"X-Auth-Token": token}
    assert glimpse.get("/v2/images", headers=headers).status_code == 200
    keystone.revoke(token)
    revoked_at = time.monotonic()
    while glimpse.get("/v2/images", headers=headers).status_code == 200:
        assert time.monotonic() - revoked_at < CACHE_TIME + 5, "revoked token still accepted"
        time.sleep(0.2)
    assert glimpse.get("/v2/images", headers=headers).status_code == 401


def test_a_service_token_needs_the_service_role_and_the_user_stays_the_caller(
    glimpse: httpx.Client, keystone: KeystoneServer
) -> None:
    user = account(keystone, "member", "reader")
    compute = token_of(keystone, account(keystone, "service"))
    headers = {"X-Auth-Token": token_of(keystone, user), "X-Service-Token": compute}
    image = new_image(glimpse, headers["X-Auth-Token"])
    shown = glimpse.get(f"/v2/images/{image['id']}", headers=headers)
    assert shown.status_code == 200
    assert shown.json()["owner"] == user.project_id
    # A token without the service role is not a service token (service_token_roles_required).
    not_a_service = token_of(keystone, account(keystone, "member", "reader"))
    refused = glimpse.get(
        f"/v2/images/{image['id']}",
        headers={**headers, "X-Service-Token": not_a_service, "Accept": "application/json"},
    )
    assert refused.status_code == 401
    assert "service token is not valid" in refused.json()["message"]


def test_keystone_down_is_503_never_a_pass_then_it_recovers(
    glimpse: httpx.Client, keystone: KeystoneServer
) -> None:
    member = account(keystone, "member", "reader")
    fresh = token_of(keystone, member)  # never shown to Glimpse, so not in its cache
    keystone.stop()
    try:
        down = glimpse.get("/v2/images", headers={"X-Auth-Token": fresh, "Accept": "application/json"})
        assert down.status_code == 503
        assert "cannot be reached" in down.json()["message"]
        assert glimpse.get("/v2/images").status_code == 401  # no token: refused without asking Keystone
    finally:
        keystone.start()
    assert glimpse.get("/v2/images", headers={"X-Auth-Token": fresh}).status_code == 200


def test_an_expired_token_is_401(glimpse: httpx.Client, keystone: KeystoneServer) -> None:
    # Keystone ends an application credential's tokens when the credential expires.
    member = account(keystone, "member", "reader")
    ends = datetime.now(UTC) + timedelta(seconds=4)
    credential = keystone.application_credential(member, "short", ends.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    token = keystone.application_credential_token(*credential)
    headers = {"X-Auth-Token": token, "Accept": "application/json"}
    assert glimpse.get("/v2/images", headers=headers).status_code == 200
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds() + 0.5))
    expired = glimpse.get("/v2/images", headers=headers)
    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.url}"'


@pytest.mark.timeout(900)  # starts the browser, installing Debian's chromium first on a fresh machine
def test_the_task_page_and_its_feed_use_the_token_the_browser_sends(
    glimpse: httpx.Client, keystone: KeystoneServer, browser: Browser
) -> None:
    """The browser adds ``X-Auth-Token`` to every request (as a proxy or an extension would): the
    page and its own ``fetch()`` of the event stream are authenticated by it, and the token is
    written into neither the page nor a URL. Without a token the page is a 401; another project's
    token sees a 404 page."""
    member = account(keystone, "member", "reader")
    token = token_of(keystone, member)
    image = new_image(glimpse, token, name="seen through a token")
    url = f"{glimpse.base_url}/v2/images/{image['id']}/tasks"
    context = browser.new_context(extra_http_headers={"X-Auth-Token": token})
    try:
        page = context.new_page()
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        response = page.goto(url)
        assert response is not None
        assert response.status == 200
        assert page.inner_text("h1") == "Tasks of image seen through a token"
        # "Live: ..." only once the feed answered 200; a refused feed says "Live updates stopped".
        expect(page.locator("#feed-status")).to_have_text(
            "Live: no task is running; a new import or copy of this image will appear here."
        )
        assert token not in page.content()
        assert not [seen for seen in urls if token in seen]
    finally:
        context.close()
    anonymous = browser.new_context()
    stranger = browser.new_context(
        extra_http_headers={"X-Auth-Token": token_of(keystone, account(keystone, "member", "reader"))}
    )
    try:
        refused = anonymous.new_page().goto(url)
        assert refused is not None
        assert refused.status == 401
        hidden = stranger.new_page()
        missing = hidden.goto(url)
        assert missing is not None
        assert missing.status == 404
        assert hidden.inner_text("h1") == "404 Not Found"
    finally:
        anonymous.close()
        stranger.close()


def test_a_wrong_service_password_is_503_and_stays_secret(keystone: KeystoneServer, tmp_path: Path) -> None:
    """keystonemiddleware cannot log in with a wrong ``[keystone_authtoken] password``: the caller gets
    a 503 that says what to check, and neither the answer nor the log (at DEBUG) shows the password."""
    wrong = "wrong-service-password-5b2e"
    register_secret(wrong, "a wrong [keystone_authtoken] password")
    server = protected_server(
        tmp_path / "wrong-password",
        keystone,
        GLIMPSE_KEYSTONE_AUTHTOKEN__PASSWORD=wrong,
        GLIMPSE_LOG_LEVEL="DEBUG",
    )
    try:
        member = account(keystone, "member", "reader")
        headers = {"X-Auth-Token": token_of(keystone, member), "Accept": "application/json"}
        answer = httpx.get(f"{server.url}/v2/images", headers=headers, timeout=60.0)
        assert answer.status_code == 503, answer.text
        assert "identity service" in answer.json()["message"]
        assert "[keystone_authtoken] credentials" in answer.json()["message"]  # what to check
        assert leaks_in(answer.text) == []
        assert leaks_in(server.log()) == []
    finally:
        server.stop()
