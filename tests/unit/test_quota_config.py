"""``use_keystone_limits``, ``[oslo_limit]`` and ``[quota]``: read once, refused early with a message
that names the option; Keystone's limits as Glimpse counts them."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from glimpse.config import load_settings
from glimpse.domain.quotas import MIB, Resource, from_keystone, refusal
from glimpse.errors import ConfigError
from glimpse.limits import ConfiguredLimits, KeystoneLimits, build_limits

GLANCE_SECTION = (
    "[DEFAULT]\nuse_keystone_limits = true\n"
    "[oslo_limit]\n"
    "auth_url = http://keystone.example:5000\nauth_type = password\nusername = glance\n"
    "password = pw\nuser_domain_id = default\nsystem_scope = all\n"
    "endpoint_id = 0a1b2c3d4e5f\nendpoint_interface = internal\nendpoint_region_name = RegionOne\n"
)


def test_quotas_default_to_user_storage_quota() -> None:
    settings = load_settings(environ={})
    assert settings.use_keystone_limits is False
    assert (settings.limits_cache_time, settings.reservation_step) == (10.0, 64 * MIB)
    limits = anyio.run(build_limits(settings).limits, "p")
    assert not limits.enforced
    quota = anyio.run(ConfiguredLimits(5000).limits, "p")
    assert quota.limit(Resource.IMAGE_SIZE_TOTAL) == 5000
    assert quota.limit(Resource.IMAGE_COUNT_TOTAL) is None


def test_a_glance_oslo_limit_section_is_taken_as_written(tmp_path: Path) -> None:
    conf = tmp_path / "glimpse.conf"
    conf.write_text(GLANCE_SECTION + "[quota]\nlimits_cache_time = 0\nreservation_step = 8MB\n")
    settings = load_settings(conf, environ={})
    assert settings.use_keystone_limits is True
    assert settings.oslo_limit["endpoint_id"] == "0a1b2c3d4e5f"
    assert (settings.limits_cache_time, settings.reservation_step) == (0.0, 8 * MIB)
    assert isinstance(build_limits(settings), KeystoneLimits)


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        ("auth_url = http://keystone.example:5000\n", "auth_url"),
        ("endpoint_id = 0a1b2c3d4e5f\n", "endpoint_id"),
    ],
)
def test_use_keystone_limits_needs_where_keystone_is_and_which_endpoint(
    tmp_path: Path, drop: str, named: str
) -> None:
    conf = tmp_path / "glimpse.conf"
    conf.write_text(GLANCE_SECTION.replace(drop, ""))
    with pytest.raises(ConfigError, match=named):
        load_settings(conf, environ={})


def test_an_oslo_limit_option_nobody_reads_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "glimpse.conf"
    conf.write_text(GLANCE_SECTION + "pasword = typo\n")
    with pytest.raises(ConfigError, match="pasword"):
        build_limits(load_settings(conf, environ={}))


@pytest.mark.parametrize(
    ("option", "value"),
    [("reservation_step", "1KB"), ("reservation_timeout", "5"), ("limits_cache_time", "-1")],
)
def test_quota_options_out_of_range_are_refused(option: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"\\[quota\\] {option}"):
        load_settings(environ={f"GLIMPSE_QUOTA__{option.upper()}": value})


def test_keystone_limits_are_mib_and_unregistered_ones_are_zero() -> None:
    limits = from_keystone({"image_size_total": 2, "image_count_total": -1, "other_service_thing": 7})
    assert limits.limit(Resource.IMAGE_SIZE_TOTAL) == 2 * MIB
    assert limits.limit(Resource.IMAGE_COUNT_TOTAL) is None  # -1: unlimited
    assert limits.limit(Resource.IMAGE_STAGE_TOTAL) == 0  # not registered: nothing allowed
    assert Resource.IMAGE_SIZE_TOTAL.in_keystone_units(3 * MIB - 1) == 2


def test_a_refusal_says_glances_words_the_numbers_and_what_to_do() -> None:
    text = refusal(Resource.IMAGE_STAGE_TOTAL, "p1", MIB, MIB // 2, MIB)
    assert text.startswith("image_stage_total is over limit for project p1")
    assert "1 MiB" in text
    assert "0.50 MiB (524288 bytes)" in text
    assert "higher limit" in text


AUTH_SECTION = (
    "[DEFAULT]\nuse_keystone_limits = true\n"
    "[oslo_limit]\nauth_section = keystone_authtoken\n"
    "endpoint_id = 0a1b2c3d4e5f\nendpoint_interface = internal\nendpoint_region_name = RegionOne\n"
    "[keystone_authtoken]\n"
    "www_authenticate_uri = http://keystone.example:5000\nmemcached_servers = localhost:11211\n"
    "auth_url = http://keystone.example:5000\nauth_type = password\nusername = glance\n"
    "password = pw\nuser_domain_id = default\nproject_name = service\nproject_domain_id = default\n"
)


def test_auth_section_reads_the_auth_plugin_from_the_named_section(tmp_path: Path) -> None:
    conf = tmp_path / "glimpse.conf"
    conf.write_text(AUTH_SECTION)
    settings = load_settings(conf, environ={})
    assert settings.oslo_limit_auth["username"] == "glance"
    assert "username" not in settings.oslo_limit
    # keystonemiddleware's own options in that section are not refused: they are not ours.
    limits = build_limits(settings)
    assert isinstance(limits, KeystoneLimits)


def test_auth_section_naming_a_missing_section_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "glimpse.conf"
    conf.write_text(AUTH_SECTION.replace("[keystone_authtoken]", "[somewhere_else]"))
    with pytest.raises(ConfigError, match=r"auth_section = keystone_authtoken names a section"):
        load_settings(conf, environ={})


def test_auth_section_without_auth_url_there_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "glimpse.conf"
    conf.write_text(AUTH_SECTION.replace("auth_url = http://keystone.example:5000\n", ""))
    with pytest.raises(ConfigError, match="auth_url"):
        load_settings(conf, environ={})
