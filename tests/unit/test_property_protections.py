"""Property protection files: what a file means, and every file that cannot be used refused with a
message that names the section and says what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from glimpse.config import load_settings
from glimpse.context import RequestContext
from glimpse.domain.policy import Policy
from glimpse.domain.property_protections import PropertyOperation as Op
from glimpse.errors import ConfigError, PolicyError
from glimpse.property_protection_file import load_protections

FILES = Path(__file__).resolve().parents[1] / "data" / "property-protections"


def caller(*roles: str) -> RequestContext:
    return RequestContext(project_id="p", user_id="u", roles=roles)


def test_the_first_section_found_in_the_name_decides() -> None:
    rules = load_protections(FILES / "roles.conf", "roles")
    policy = Policy(protections=rules)
    member = caller("member", "reader")
    assert policy.property_allowed(member, "x_owner_a", Op.UPDATE)
    # A search, not a full match: only the anchors in the section names keep x_owner_ at the start.
    assert not policy.property_allowed(member, "a_x_owner_a", Op.READ)
    assert not policy.property_allowed(member, "x_fixed", Op.UPDATE)
    assert policy.property_allowed(member, "x_fixed", Op.READ)
    assert policy.property_allowed(caller(), "x_anyone_a", Op.DELETE)
    assert not policy.property_allowed(caller("admin"), "x_nobody_a", Op.READ)
    assert policy.property_allowed(caller("Member"), "x_mixed_case", Op.CREATE)
    assert not policy.property_allowed(member, "os_distro", Op.READ)
    assert policy.property_allowed(caller("ADMIN"), "os_distro", Op.READ)


def test_no_file_allows_everything() -> None:
    rules = load_protections(None, "roles")
    assert not rules.enabled
    assert Policy(protections=rules).property_allowed(caller(), "anything", Op.DELETE)


def test_a_file_without_a_matching_section_refuses_the_property(tmp_path: Path) -> None:
    file = tmp_path / "p.conf"
    file.write_text("[^a$]\ncreate = @\nread = @\nupdate = @\ndelete =\n")
    policy = Policy(protections=load_protections(file, "roles"))
    assert policy.property_allowed(caller(), "a", Op.UPDATE)
    assert not policy.property_allowed(caller(), "a", Op.DELETE)  # an empty value lets no one
    assert not policy.property_allowed(caller("admin"), "b", Op.READ)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[x_(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n", "[x_(] is not a valid regular expression"),
        ("[x]\ncreate = @\nread = @\nupdate = @\n", "[x] has no 'delete' option"),
        ("[x]\ncreate = @\nread = @\nupdate = @\ndelete = @\nremove = @\n", "unknown option(s) remove"),
        ("[x]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n", "'@' (anyone) and '!' (no one)"),
        ("create = admin\n", "line 1 comes before any [section]"),
        ("[x]\ncreate = @\n[x]\n", "section [x] appears twice"),
        ("# nothing\n", "has no sections"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "p.conf"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_protections(file, "roles")
    assert caught.value.message.startswith(f"property_protection_file {file}: ")
    assert message in caught.value.message


def test_a_missing_file_and_a_bad_format_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_protections(tmp_path / "missing.conf", "roles")
    with pytest.raises(ConfigError, match="write roles or policies"):
        load_protections(FILES / "roles.conf", "rbac")


def test_the_policies_format_takes_one_defined_rule(tmp_path: Path) -> None:
    file = tmp_path / "p.conf"
    file.write_text("[x]\ncreate = a, b\nread = @\nupdate = @\ndelete = @\n")
    with pytest.raises(ConfigError, match="one policy rule per operation"):
        load_protections(file, "policies")
    rules = load_protections(FILES / "policies.conf", "policies")
    with pytest.raises(PolicyError, match="names the policy rule\\(s\\) billing_writer"):
        Policy(protections=rules)
    policy = Policy({"billing_writer": "role:billing"}, protections=rules)
    assert policy.property_allowed(caller("billing"), "billing_x", Op.CREATE)
    assert not policy.property_allowed(caller("admin"), "billing_x", Op.CREATE)
    assert not policy.property_allowed(caller("billing"), "billing_x", Op.DELETE)


def test_the_options_are_read_and_checked(tmp_path: Path) -> None:
    base = {"GLIMPSE_DATA_DIR": str(tmp_path)}
    settings = load_settings(
        environ={
            **base,
            "GLIMPSE_PROPERTY_PROTECTION_FILE": str(FILES / "roles.conf"),
            "GLIMPSE_PROPERTY_PROTECTION_RULE_FORMAT": "policies",
            "GLIMPSE_DELAYED_DELETE": "true",
            "GLIMPSE_SCRUB_TIME": "60",
            "GLIMPSE_WAKEUP_TIME": "5",
        }
    )
    assert (
        settings.property_protection_file,
        settings.property_protection_rule_format,
        settings.delayed_delete,
        settings.scrub_time,
        settings.wakeup_time,
    ) == (FILES / "roles.conf", "policies", True, 60, 5)
    defaults = load_settings(environ=base)
    assert (defaults.property_protection_file, defaults.property_protection_rule_format) == (None, "roles")
    assert (defaults.delayed_delete, defaults.scrub_time, defaults.wakeup_time) == (False, 0, 300)
    with pytest.raises(ConfigError, match="property_protection_rule_format = 'rbac' is not valid"):
        load_settings(environ={**base, "GLIMPSE_PROPERTY_PROTECTION_RULE_FORMAT": "rbac"})
    with pytest.raises(ConfigError, match="wakeup_time"):
        load_settings(environ={**base, "GLIMPSE_WAKEUP_TIME": "0"})
