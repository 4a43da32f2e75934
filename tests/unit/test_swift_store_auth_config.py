"""A swift store's authentication settings: v1 or Keystone v3, from the store's own options or from a
reference of ``swift_store_config_file`` (Glance's two ways), checked when the store is built."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from glimpse.config import StoreSettings
from glimpse.errors import ConfigError
from glimpse.storage.registry import build_store
from glimpse.storage.swift import KeystoneAuth, SwiftStore

KEYSTONE = "http://127.0.0.1:5000/v3"
DIRECT = {
    "swift_store_auth_version": "3",
    "swift_store_auth_address": KEYSTONE,
    "swift_store_user": "service:glance",
    "swift_store_key": "glance-secret",
    "swift_store_container": "images",
}


def build(options: Mapping[str, str]) -> SwiftStore:
    store = build_store(StoreSettings("reliable", "swift", options=dict(options)))
    assert isinstance(store, SwiftStore)
    return store


def reference_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "glance-swift-store.conf"
    path.write_text(body)
    return str(path)


def test_keystone_from_the_store_options() -> None:
    store = build(
        {
            **DIRECT,
            "swift_store_region": "RegionTwo",
            "swift_store_endpoint_type": "internalURL",
            "swift_store_service_type": "object-store-2",
        }
    )

    assert store.keystone == KeystoneAuth(
        project_name="service",
        region="RegionTwo",
        endpoint_type="internalURL",
        service_type="object-store-2",
    )
    assert store.auth_address == KEYSTONE
    assert store.location_for("abc") == "swift+http://127.0.0.1:5000/images/abc"
    assert "glance-secret" not in repr(store)
    assert "auth_version='3'" in repr(store)


def test_defaults_are_glances() -> None:
    keystone = build(DIRECT).keystone
    assert keystone is not None
    assert (keystone.endpoint_type, keystone.service_type, keystone.region) == (
        "publicURL",
        "object-store",
        None,
    )
    # Without an auth version the store keeps v1 (tempauth), as before Keystone was supported.
    assert build({**DIRECT, "swift_store_auth_version": ""}).keystone is None


def test_a_reference_of_the_config_file_is_the_same_store(tmp_path: Path) -> None:
    path = reference_file(
        tmp_path,
        f"[ref1]\nuser = other:someone\nkey = k\nauth_address = http://elsewhere/v3\nauth_version = 3\n"
        f"[swift1]\nuser = service:glance\nkey = glance-secret\nauth_address = {KEYSTONE}\n"
        "auth_version = 3\nuser_domain_id = default\nproject_domain_id = default\n",
    )
    common = {"swift_store_container": "images", "swift_store_region": "RegionOne"}

    from_file = build({**common, "swift_store_config_file": path, "default_swift_reference": "swift1"})
    direct = build({**DIRECT, **common})

    assert from_file.auth_address == direct.auth_address
    assert from_file._user == direct._user == "glance"
    assert from_file._key == direct._key
    assert from_file.location_for("abc") == direct.location_for("abc")
    assert from_file.keystone == KeystoneAuth(
        project_name="service", user_domain_id="default", project_domain_id="default", region="RegionOne"
    )
    assert direct.keystone == KeystoneAuth(project_name="service", region="RegionOne")
    # ref1 is the default reference, as in Glance
    assert build({"swift_store_config_file": path}).auth_address == "http://elsewhere/v3"


def test_domain_names_in_a_reference(tmp_path: Path) -> None:
    path = reference_file(
        tmp_path,
        f"[ref1]\nuser = p:u\nkey = k\nauth_address = {KEYSTONE}\nauth_version = 3\n"
        "user_domain_name = Users\nproject_domain_name = Projects\n",
    )
    keystone = build({"swift_store_config_file": path}).keystone
    assert keystone == KeystoneAuth(
        project_name="p", user_domain_name="Users", project_domain_name="Projects"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"swift_store_auth_version": "2"}, "no longer offers the v2.0 identity API; set it to 3"),
        ({"swift_store_auth_version": "4"}, "must be 1 .v1 auth, such as tempauth. or 3"),
        ({"swift_store_user": "glance"}, "swift_store_user = 'glance' must be 'project:user'"),
        ({"swift_store_endpoint_type": "public"}, "publicURL, internalURL, adminURL"),
        (
            {"swift_store_cacert": "/nonexistent/ca.pem"},
            "swift_store_cacert = '/nonexistent/ca.pem' is not a file",
        ),
        ({"swift_store_auth_insecure": "maybe"}, "swift_store_auth_insecure = 'maybe' is not a boolean"),
        ({"default_swift_reference": "ref1"}, "swift_store_config_file is not"),
        (
            {
                "swift_store_config_file": "/nonexistent/swift.conf",
                **dict.fromkeys(("swift_store_auth_address", "swift_store_user", "swift_store_key"), ""),
            },
            r"swift_store_config_file = '/nonexistent/swift.conf' cannot be read",
        ),
        ({"swift_store_multi_tenant": "true"}, "multi_tenant = true is not available yet"),
    ],
)
def test_bad_keystone_options(options: Mapping[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build({**DIRECT, **options})
    assert "[reliable]" in caught.value.message
    assert "glance-secret" not in caught.value.message


@pytest.mark.parametrize(
    ("body", "extra", "message"),
    [
        (
            "[other]\nuser = a:b\n",
            {},
            r"default_swift_reference = 'ref1' names no section .* \(its sections: other\)",
        ),
        (
            "[ref1]\nuser = a:b\nauth_address = http://x/v3\n",
            {},
            r"\[ref1\] of swift_store_config_file .* has no key",
        ),
        (
            "[ref1]\nuser = a:b\nkey = k\nauth_address = http://x/v3\ntenant = t\n",
            {},
            "unknown option.s. tenant",
        ),
        ("[ref1]\nuser = a:b\nkey = k\nauth_address = http://x/v3\nauth_version = 2\n", {}, "v2.0"),
        (
            "[ref1]\nuser = a\nkey = k\nauth_address = http://x/v3\nauth_version = 3\n",
            {},
            "user of .* 'project:user'",
        ),
        (
            "[ref1]\nuser = a:b\nkey = k\nauth_address = http://x/auth/v1.0\nuser_domain_id = default\n",
            {},
            "only Keystone .auth_version = 3. uses",
        ),
        (
            "[ref1]\nuser = a:b\nkey = k\nauth_address = http://x/v3\nauth_version = 3\n"
            "user_domain_id = default\nuser_domain_name = Default\n",
            {},
            "sets both user_domain_id and user_domain_name",
        ),
        ("[ref1]\nuser = a:b\nkey = k\nauth_address = http://x/v3\n", {"swift_store_key": "x"}, "sets both"),
        ("not an ini file\n", {}, "is not an INI file"),
    ],
)
def test_bad_references(tmp_path: Path, body: str, extra: Mapping[str, str], message: str) -> None:
    path = reference_file(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as caught:
        build({"swift_store_config_file": path, **extra})
    assert path in caught.value.message or "[reliable]" in caught.value.message


def test_a_reference_may_take_its_auth_version_from_the_store(tmp_path: Path) -> None:
    path = reference_file(tmp_path, f"[ref1]\nuser = service:glance\nkey = k\nauth_address = {KEYSTONE}\n")
    assert build({"swift_store_config_file": path, "swift_store_auth_version": "3"}).keystone is not None
    assert build({"swift_store_config_file": path}).keystone is None
