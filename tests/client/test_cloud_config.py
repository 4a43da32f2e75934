"""Connection settings the OpenStack way: clouds.yaml, ``OS_*`` variables, Keystone tokens.

``config_from_cloud`` and ``config_from_session`` against a live ``glimpse-server serve``: directly
with ``auth_type: none``, and, where tokens matter, with a real Keystone on loopback and
keystonemiddleware's ``auth_token`` in front of the server, as in a Glance deployment
(``keystonesupport``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from glimpse_client import (
    AsyncClient,
    Client,
    ClientConfig,
    ClientError,
    GlimpseClientError,
    config_from_cloud,
    config_from_session,
)
from glimpse_client.cli import connection
from keystonesupport import Account, AuthTokenProxy, KeystoneServer, protected_server
from livesupport import Server, free_port, run_cli

pytestmark = [
    pytest.mark.live,
    # openstacksdk announces its own deprecations; they say nothing about this SDK.
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]

PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cloud")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OS_"))}
    env.update({"GLIMPSE_DATA_DIR": str(root / "data"), "GLIMPSE_LOG_LEVEL": "WARNING"})
    live = Server(name="cloud", port=free_port(), log_path=root / "server.log")
    live.start(env)
    live.wait_ready()
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No OS_* variable and no clouds.yaml from the machine; returns where a test's clouds.yaml goes."""
    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    clouds = tmp_path / "clouds.yaml"
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(tmp_path / "secure.yaml"))
    return clouds


def write_clouds(path: Path, **clouds: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({"clouds": clouds}))


def test_clouds_yaml_without_auth_uses_the_endpoint_override(server: Server, clean_environment: Path) -> None:
    write_clouds(clean_environment, dev={"auth_type": "none", "image_endpoint_override": f"{server.url}/v2/"})
    config = config_from_cloud("dev")
    assert config.endpoint == server.url
    assert config.token is None
    with Client(config) as sdk:
        image = sdk.create_image(name="from-clouds-yaml", disk_format="raw", container_format="bare")
        assert image.owner == "glimpse-project"  # the server's no-auth default identity
        assert sdk.get_image(image.id).name == "from-clouds-yaml"


def test_os_variables_alone(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_AUTH_TYPE", "none")
    monkeypatch.setenv("OS_IMAGE_ENDPOINT_OVERRIDE", server.url)
    monkeypatch.setenv("OS_API_TIMEOUT", "12")
    config = config_from_cloud()
    assert config.endpoint == server.url
    assert config.timeout == 12.0
    with Client(config) as sdk:
        assert {store["id"] for store in sdk.stores()} >= {"fast"}


def test_auth_none_needs_an_endpoint(clean_environment: Path) -> None:
    write_clouds(clean_environment, dev={"auth_type": "none"})
    with pytest.raises(GlimpseClientError, match="image_endpoint_override"):
        config_from_cloud("dev")


def test_unknown_cloud_is_the_sdks_error(clean_environment: Path) -> None:
    write_clouds(
        clean_environment, dev={"auth_type": "none", "image_endpoint_override": "http://127.0.0.1:9"}
    )
    with pytest.raises(GlimpseClientError, match="Cloud nope was not found"):
        config_from_cloud("nope")


def test_tls_settings_follow_the_cloud(clean_environment: Path) -> None:
    base = {"auth_type": "none", "image_endpoint_override": "https://127.0.0.1:9"}
    write_clouds(clean_environment, open={**base, "verify": False}, ca={**base, "cacert": certifi.where()})
    assert config_from_cloud("open").verify is False
    assert isinstance(config_from_cloud("ca").verify, ssl.SSLContext)


# --- a real Keystone, and keystonemiddleware in front of the server ------------------------------


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    # The set-up database is shared by the xdist workers through the run's common base directory.
    with KeystoneServer(tmp_path_factory.getbasetemp().parent, tmp_path_factory.mktemp("keystone")) as ks:
        yield ks


@pytest.fixture(scope="module")
def protected(keystone: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Glimpse validating the tokens itself (``auth_strategy = keystone``), as a deployment runs it."""
    live = protected_server(tmp_path_factory.mktemp("protected"), keystone)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def proxy(server: Server, keystone: KeystoneServer) -> Iterator[AuthTokenProxy]:
    """keystonemiddleware in front of the no-auth server, recording the tokens and refusals it sees:
    for the tests of the client's catalog look-up and its retries."""
    with AuthTokenProxy(server.url, keystone, prefix="/image") as checked:
        keystone.image_service(
            {
                ("public", "RegionOne"): f"{checked.url}/image",
                ("internal", "RegionOne"): "http://internal.invalid:9292/v2",
                ("public", "RegionTwo"): "http://region-two.invalid:9292",
            }
        )
        yield checked


_accounts = itertools.count(1)


@pytest.fixture
def demo(keystone: KeystoneServer) -> Account:
    """A project and user of its own for each test (some tests revoke tokens or change passwords)."""
    return keystone.account(f"demo-{next(_accounts)}", PASSWORD, ("member", "reader"))


def password_cloud(
    keystone: KeystoneServer, account: Account, password: str | None = None, **extra: Any
) -> dict[str, Any]:
    auth = {
        "auth_url": keystone.url,
        "username": account.user_name,
        "password": password or account.password,
        "project_name": account.project_name,
        "user_domain_id": "default",
        "project_domain_id": "default",
    }
    return {"auth_type": "password", "auth": auth, "region_name": "RegionOne", **extra}


def test_a_fixed_token_is_validated_by_the_server(
    keystone: KeystoneServer, protected: Server, demo: Account, clean_environment: Path
) -> None:
    token = keystone.token(demo.user_name, demo.password, demo.project_name)
    write_clouds(
        clean_environment,
        fixed={"auth_type": "admin_token", "auth": {"endpoint": protected.url, "token": token}},
        wrong={"auth_type": "admin_token", "auth": {"endpoint": protected.url, "token": "wrong"}},
    )
    with Client(config_from_cloud("fixed")) as sdk:
        image = sdk.create_image(name="with-token", disk_format="raw", container_format="bare")
        assert image.owner == demo.project_id
    with Client(config_from_cloud("wrong")) as sdk, pytest.raises(ClientError) as caught:
        sdk.get_image(image.id)
    assert caught.value.status == 401


def test_a_fixed_token_is_not_retried(proxy: AuthTokenProxy) -> None:
    config = config_from_cloud(
        auth_type="admin_token", auth={"endpoint": proxy.url, "token": "wrong"}, load_yaml_config=False
    )
    refused = proxy.refused
    with Client(config) as sdk, pytest.raises(ClientError) as caught:
        sdk.get_image("00000000-0000-0000-0000-000000000000")
    assert caught.value.status == 401
    assert proxy.refused == refused + 1


def test_password_flow_uses_the_catalog_and_the_token(
    keystone: KeystoneServer, proxy: AuthTokenProxy, demo: Account, clean_environment: Path
) -> None:
    write_clouds(clean_environment, demo=password_cloud(keystone, demo))
    config = config_from_cloud("demo")
    assert config.endpoint == f"{proxy.url}/image"
    seen = len(proxy.tokens())
    with Client(config) as sdk:
        ids = {
            sdk.create_image(name=f"ks-{i}", disk_format="raw", container_format="bare", tags=["ks"]).id
            for i in range(3)
        }
        # `next` links from the server are relative to the endpoint, /image prefix included.
        assert {image.id for image in sdk.list_images(page_size=2, tag="ks")} == ids
    used = proxy.tokens()[seen:]
    assert len(used) == 5  # three creates, two pages
    assert len(set(used)) == 1
    assert all(path.startswith("/image/v2/") for path in proxy.paths[seen:])


def test_interface_and_region_pick_the_catalog_entry(
    keystone: KeystoneServer, proxy: AuthTokenProxy, demo: Account, clean_environment: Path
) -> None:
    write_clouds(
        clean_environment,
        internal=password_cloud(keystone, demo, interface="internal"),
        two={**password_cloud(keystone, demo), "region_name": "RegionTwo"},
        override=password_cloud(keystone, demo, image_endpoint_override="http://override.invalid/"),
    )
    assert config_from_cloud("internal").endpoint == "http://internal.invalid:9292"
    assert config_from_cloud("two").endpoint == "http://region-two.invalid:9292"
    assert config_from_cloud("override").endpoint == "http://override.invalid"


def test_a_401_reauthenticates_once_and_retries(
    keystone: KeystoneServer, proxy: AuthTokenProxy, demo: Account, clean_environment: Path
) -> None:
    write_clouds(clean_environment, demo=password_cloud(keystone, demo))
    seen, refused = len(proxy.tokens()), proxy.refused
    with Client(config_from_cloud("demo")) as sdk:
        image = sdk.create_image(name="before", disk_format="raw", container_format="bare")
        (first,) = proxy.tokens()[seen:]
        keystone.revoke(first)  # revoked before its expiry: the middleware now refuses it
        assert sdk.get_image(image.id).name == "before"
        first_again, second = proxy.tokens()[seen + 1 :]
        assert first_again == first != second
        assert proxy.refused == refused + 1

        # A new password revokes the user's tokens, and the old one gets no new token: one retry,
        # refused by Keystone itself, then the 401.
        keystone.set_password(demo, "changed-" + PASSWORD)
        with pytest.raises(ClientError) as caught:
            sdk.get_image(image.id)
    assert caught.value.status == 401
    assert "Getting a token from Keystone failed" in caught.value.message
    assert proxy.refused == refused + 2


def test_async_client_gets_tokens_too(
    keystone: KeystoneServer, proxy: AuthTokenProxy, demo: Account, clean_environment: Path
) -> None:
    write_clouds(clean_environment, demo=password_cloud(keystone, demo))
    config = config_from_cloud("demo")
    seen, refused = len(proxy.tokens()), proxy.refused

    async def flow() -> str | None:
        async with AsyncClient(config) as sdk:
            image = await sdk.create_image(name="async-ks", disk_format="raw", container_format="bare")
            keystone.revoke(proxy.tokens()[seen])
            return (await sdk.get_image(image.id)).owner

    assert asyncio.run(flow()) == demo.project_id
    assert len(set(proxy.tokens()[seen:])) == 2
    assert proxy.refused == refused + 1


def test_wrong_password_is_a_401(keystone: KeystoneServer, demo: Account, clean_environment: Path) -> None:
    write_clouds(clean_environment, demo=password_cloud(keystone, demo, password="nope"))
    with pytest.raises(ClientError) as caught:
        config_from_cloud("demo")
    assert caught.value.status == 401


def test_config_from_a_session(
    keystone: KeystoneServer, proxy: AuthTokenProxy, protected: Server, demo: Account
) -> None:
    plugin = v3.Password(
        auth_url=f"{keystone.url}/v3",
        username=demo.user_name,
        password=demo.password,
        project_name=demo.project_name,
        user_domain_id="default",
        project_domain_id="default",
    )
    session = ks_session.Session(auth=plugin)
    config = config_from_session(session, region_name="RegionOne")
    assert config.endpoint == f"{proxy.url}/image"
    assert config_from_session(session, interface="internal").endpoint == "http://internal.invalid:9292"
    assert (
        config_from_session(session, endpoint_override="http://x.invalid/v2").endpoint == "http://x.invalid"
    )
    with Client(config_from_session(session, endpoint_override=protected.url)) as sdk:
        image = sdk.create_image(name="session", disk_format="raw", container_format="bare")
        assert image.owner == demo.project_id


def test_no_auth_identity_headers_need_no_extra(server: Server) -> None:
    config = ClientConfig(server.url, project_id="p-dev", user_id="u-dev")
    with Client(config) as sdk:
        assert sdk.create_image(name="dev", disk_format="raw", container_format="bare").owner == "p-dev"


@pytest.mark.parametrize("missing", ["openstack", "keystoneauth1"])
def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    for name in list(sys.modules):
        if name == missing or name.startswith(f"{missing}."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` fail
    for build in (config_from_cloud, lambda: config_from_session(object())):  # type: ignore[arg-type]
        with pytest.raises(GlimpseClientError, match=r"glimpse-client\[openstack\]"):
            build()


# --- the `glimpse` command line with a cloud ----------------------------------------------------


def cli_options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    connection.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_timeout_is_the_clouds_unless_given(clean_environment: Path) -> None:
    write_clouds(
        clean_environment,
        slow={"auth_type": "none", "image_endpoint_override": "http://127.0.0.1:9", "api_timeout": 7},
        plain={"auth_type": "none", "image_endpoint_override": "http://127.0.0.1:9"},
    )
    assert connection.config_from_options(cli_options("--os-cloud", "slow"), {}).timeout == 7.0
    assert connection.config_from_options(cli_options("--os-cloud", "plain"), {}).timeout == 30.0
    given = cli_options("--os-cloud", "slow", "--timeout", "3")
    assert connection.config_from_options(given, {}).timeout == 3.0
    assert (
        connection.config_from_options(cli_options("--os-cloud", "slow"), {"GLIMPSE_TIMEOUT": "4"}).timeout
        == 4.0
    )
    assert connection.config_from_options(cli_options("--endpoint", "http://x"), {}).timeout == 30.0


def test_cli_member_set_takes_the_project_of_the_token(
    protected: Server, keystone: KeystoneServer, demo: Account, clean_environment: Path
) -> None:
    sharer = keystone.account(f"sharer-{next(_accounts)}", PASSWORD, ("member", "reader"))
    write_clouds(
        clean_environment,
        demo=password_cloud(keystone, demo, image_endpoint_override=protected.url),
        sharer=password_cloud(keystone, sharer, image_endpoint_override=protected.url),
    )
    with Client(config_from_cloud("sharer")) as owner:
        image_id = owner.create_image(name="shared", visibility="shared").id
        owner.add_member(image_id, demo.project_id)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
        argv = ["--os-cloud", "demo", "member", "set", image_id, "--accept", "-f", "json"]
        done = run_cli(*argv, env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["member_id"] == demo.project_id
        members = [(m.member_id, m.status) for m in owner.list_members(image_id)]
        assert members == [(demo.project_id, "accepted")]
