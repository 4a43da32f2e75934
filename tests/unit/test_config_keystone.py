"""auth_strategy, Glance's [paste_deploy] flavor, [keystone_authtoken] and the [oslo_policy] scope options."""

from __future__ import annotations

from pathlib import Path

import pytest

from glimpse.api.auth import KeystoneAuthenticator, NoAuthAuthenticator, build_authenticator
from glimpse.config import load_settings
from glimpse.errors import ConfigError

AUTHTOKEN = {
    "GLIMPSE_KEYSTONE_AUTHTOKEN__WWW_AUTHENTICATE_URI": "http://keystone.example:5000",
    "GLIMPSE_KEYSTONE_AUTHTOKEN__AUTH_URL": "http://keystone.example:5000",
    "GLIMPSE_KEYSTONE_AUTHTOKEN__AUTH_TYPE": "password",
}


def test_noauth_is_the_default() -> None:
    settings = load_settings(environ={})
    assert settings.auth_strategy == "noauth"
    assert isinstance(build_authenticator(settings), NoAuthAuthenticator)
    assert settings.enforce_scope is True
    assert settings.enforce_new_defaults is True


def test_a_glance_api_conf_section_is_taken_as_written(tmp_path: Path) -> None:
    conf = tmp_path / "glimpse.conf"
    conf.write_text(
        "[paste_deploy]\nflavor = keystone\n"
        "[keystone_authtoken]\n"
        "www_authenticate_uri = http://keystone.example:5000\n"
        "auth_url = http://keystone.example:5000\n"
        "auth_type = password\nusername = glance\npassword = pw\nproject_name = service\n"
        "user_domain_name = Default\nproject_domain_name = Default\nregion_name = RegionOne\n"
        "memcached_servers =\ntoken_cache_time = 300\nservice_token_roles = service\n"
        "service_token_roles_required = true\ninterface = internal\n"
        "[oslo_policy]\nenforce_scope = false\nenforce_new_defaults = true\n"
    )
    settings = load_settings(conf, environ={})
    assert settings.auth_strategy == "keystone"
    assert settings.keystone_authtoken["username"] == "glance"
    assert settings.keystone_authtoken["interface"] == "internal"
    assert (settings.enforce_scope, settings.enforce_new_defaults) == (False, True)
    # keystonemiddleware accepts every option of the section (nothing is contacted yet).
    assert isinstance(build_authenticator(settings), KeystoneAuthenticator)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GLIMPSE_AUTH_STRATEGY": "basic"}, "auth_strategy = 'basic' is not known"),
        (
            {"GLIMPSE_AUTH_STRATEGY": "noauth", "GLIMPSE_PASTE_DEPLOY__FLAVOR": "keystone"},
            "contradicts \\[paste_deploy\\] flavor",
        ),
        ({"GLIMPSE_AUTH_STRATEGY": "keystone"}, "needs \\[keystone_authtoken\\] www_authenticate_uri"),
        (
            {
                "GLIMPSE_AUTH_STRATEGY": "keystone",
                "GLIMPSE_KEYSTONE_AUTHTOKEN__AUTH_URL": "http://keystone.example:5000",
            },
            "needs \\[keystone_authtoken\\] auth_type",
        ),
        (
            {
                "GLIMPSE_AUTH_STRATEGY": "keystone",
                **AUTHTOKEN,
                "GLIMPSE_KEYSTONE_AUTHTOKEN__DELAY_AUTH_DECISION": "true",
            },
            "delay_auth_decision = true would let requests without a valid token through",
        ),
        (
            {
                "GLIMPSE_AUTH_STRATEGY": "keystone",
                **AUTHTOKEN,
                "GLIMPSE_KEYSTONE_AUTHTOKEN__TOKEN_CACHE_TIME": "x",
            },
            "token_cache_time = 'x' is not a whole number",
        ),
        ({"GLIMPSE_OSLO_POLICY__ENFORCE_SCOPE": "maybe"}, "\\[oslo_policy\\] enforce_scope"),
        (
            {"GLIMPSE_OSLO_POLICY__ENFORCE_NEW_DEFAULTS": "false"},
            "enforce_new_defaults = false is not supported",
        ),
    ],
)
def test_unusable_auth_settings_stop_the_load(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_flavor_keystone_variants_mean_keystone() -> None:
    settings = load_settings(
        environ={"GLIMPSE_PASTE_DEPLOY__FLAVOR": "keystone+cachemanagement", **AUTHTOKEN}
    )
    assert settings.auth_strategy == "keystone"
    assert load_settings(environ={"GLIMPSE_PASTE_DEPLOY__FLAVOR": "caching"}).auth_strategy == "noauth"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"GLIMPSE_KEYSTONE_AUTHTOKEN__USERNAM": "glance"}, "unknown option\\(s\\) usernam"),
        ({"GLIMPSE_KEYSTONE_AUTHTOKEN__AUTH_TYPE": "kerberos-ish"}, "is not a keystoneauth1 plugin"),
    ],
)
def test_the_authenticator_refuses_what_keystonemiddleware_would_not_read(
    extra: dict[str, str], message: str
) -> None:
    settings = load_settings(environ={"GLIMPSE_AUTH_STRATEGY": "keystone", **AUTHTOKEN, **extra})
    with pytest.raises(ConfigError, match=message):
        build_authenticator(settings)


def test_glance_download_is_offered_only_when_enabled_and_tokens_are_validated() -> None:
    default = load_settings(environ={})
    assert default.enabled_import_methods == ("glance-direct", "web-download", "copy-image")
    assert default.download_properties == ("hw_", "trait:", "os_distro", "os_secure_boot", "os_type")
    methods = {"GLIMPSE_ENABLED_IMPORT_METHODS": "web-download,glance-download"}
    assert load_settings(environ=methods).offered_import_methods == ("web-download",)
    protected = load_settings(environ={**AUTHTOKEN, **methods, "GLIMPSE_AUTH_STRATEGY": "keystone"})
    assert protected.offered_import_methods == ("web-download", "glance-download")
    assert protected.identity_url == "http://keystone.example:5000"
    assert load_settings(
        environ={**AUTHTOKEN, "GLIMPSE_AUTH_STRATEGY": "keystone"}
    ).offered_import_methods == (
        "glance-direct",
        "web-download",
        "copy-image",
    )


def test_the_properties_a_glance_download_copies_are_glances_option() -> None:
    env = {"GLIMPSE_GLANCE_DOWNLOAD_PROPERTIES__EXTRA_PROPERTIES": "hw_, 'os_distro', custom:"}
    assert load_settings(environ=env).download_properties == ("hw_", "os_distro", "custom:")
