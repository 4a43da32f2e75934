"""The authorisation engine: rule language, shipped defaults, and policy files."""

from __future__ import annotations

import enum
import json
from pathlib import Path

import pytest

from glimpse.context import RequestContext
from glimpse.domain.policy import (
    DEFAULT_RULES,
    DEFAULTS,
    IMAGE_TARGET_KEYS,
    Policy,
    PolicyError,
    PolicyRule,
    image_target,
)
from glimpse.errors import Forbidden, GlimpseError
from glimpse.policy_file import load_policy


def ctx(
    project: str | None = "p-own",
    *roles: str,
    user: str | None = "u-1",
    is_admin: bool = False,
) -> RequestContext:
    return RequestContext(user_id=user, project_id=project, roles=roles, is_admin=is_admin)


def allows(rule_text: str, context: RequestContext, target: dict[str, object] | None = None) -> bool:
    return Policy({"t": rule_text}).check("t", context, target or {})


class Colour(enum.Enum):
    RED = "red"


# --------------------------------------------------------------------------------------------------------
# The rule language

PLAIN = ctx("p-own", "member", "reader")
TARGET: dict[str, object] = {
    "project_id": "p-own",
    "other": "p-other",
    "visibility": "public",
    "label": "my value",
    "flag": True,
    "colour": Colour.RED,
    "nothing": None,
    "role_name": "member",
}


@pytest.mark.parametrize(
    ("rule", "context", "expected"),
    [
        # always / never / empty
        ("@", PLAIN, True),
        ("!", PLAIN, False),
        ("", PLAIN, True),
        ("   ", PLAIN, True),
        # roles: case-insensitive on both sides
        ("role:member", PLAIN, True),
        ("role:MEMBER", PLAIN, True),
        ("role:admin", PLAIN, False),
        ("role:admin", ctx("p", "Admin"), True),
        ("role:%(role_name)s", PLAIN, True),
        ("role:%(missing)s", PLAIN, False),
        ("role:'member'", PLAIN, True),
        # caller attributes against target values and constants
        ("project_id:%(project_id)s", PLAIN, True),
        ("project_id:%(other)s", PLAIN, False),
        ("project_id:p-own", PLAIN, True),
        ("project_id:'p-own'", PLAIN, True),
        ("user_id:u-1", PLAIN, True),
        ("user_id:u-2", PLAIN, False),
        ("project_id:%(missing)s", PLAIN, False),
        ("project_id:%(nothing)s", PLAIN, False),
        ("project_id:%(project_id)s", ctx(None, "member"), False),
        ("project_id:None", ctx(None, "member"), False),
        ("is_admin:True", ctx("p", is_admin=True), True),
        ("is_admin:True", PLAIN, False),
        ("is_admin:False", PLAIN, True),
        ("project_id:x-%(project_id)s", PLAIN, False),
        # quoted literals against target values
        ("'public':%(visibility)s", PLAIN, True),
        ('"public":%(visibility)s', PLAIN, True),
        ("'private':%(visibility)s", PLAIN, False),
        ("'my value':%(label)s", PLAIN, True),
        ("'True':%(flag)s", PLAIN, True),
        ("'red':%(colour)s", PLAIN, True),
        ("'None':%(nothing)s", PLAIN, False),
        ("'public':%(missing)s", PLAIN, False),
        ("'100%':100%%", PLAIN, True),
        # operators and precedence: not > and > or
        ("role:member and role:reader", PLAIN, True),
        ("role:member and role:admin", PLAIN, False),
        ("role:admin or role:reader", PLAIN, True),
        ("not role:admin", PLAIN, True),
        ("not not role:member", PLAIN, True),
        ("role:member or role:x and role:y", PLAIN, True),
        ("(role:member or role:x) and role:y", PLAIN, False),
        ("role:x and role:y or role:member", PLAIN, True),
        ("role:x and (role:y or role:member)", PLAIN, False),
        ("not role:member and role:reader", PLAIN, False),
        ("not (role:admin and role:reader)", PLAIN, True),
        ("not role:admin or role:x", PLAIN, True),
        ("role:member AND NOT role:admin", PLAIN, True),
        ("((role:member))", PLAIN, True),
        ("(role:x or (role:y or (role:z or role:reader)))", PLAIN, True),
        ("role:member and (project_id:%(project_id)s or 'community':%(visibility)s)", PLAIN, True),
        # a quoted literal may hold spaces, parentheses and keywords
        ("'a (b) or c':'a (b) or c'", PLAIN, True),
    ],
)
def test_rule_language(rule: str, context: RequestContext, expected: bool) -> None:
    assert Policy({"t": rule}).check("t", context, TARGET) is expected


def test_rule_reference_evaluates_the_named_rule() -> None:
    policy = Policy({"owner": "project_id:%(project_id)s", "t": "rule:owner and role:member"})
    assert policy.check("t", PLAIN, {"project_id": "p-own"})
    assert not policy.check("t", PLAIN, {"project_id": "p-other"})


@pytest.mark.parametrize(
    ("rule", "column", "problem"),
    [
        ("role:a and", 11, "expected a check"),
        ("and role:a", 1, "expected a check"),
        ("not", 4, "expected a check"),
        ("()", 2, "expected a check"),
        ("(role:a", 8, "expected ')'"),
        ("(role:a or (role:b)", 20, "expected ')'"),
        ("role:a)", 7, "unexpected ')'"),
        ("role:a role:b", 8, "expected 'and' or 'or'"),
        ("role:a (role:b)", 8, "expected 'and' or 'or'"),
        ("'public:%(visibility)s", 1, "unterminated quote"),
        ('role:a or "x', 11, "unterminated quote"),
        ("'public'%(visibility)s", 9, "expected ':'"),
        ("foo:bar", 1, "unknown check 'foo'"),
        ("tenant:%(owner)s", 1, "unknown check 'tenant'"),
        ("admin", 1, "expected a check such as"),
        ("role:", 6, "missing value"),
        ("rule:", 6, "missing value"),
        ("'x':", 5, "missing value"),
        ("rule:a/b", 6, "invalid rule name"),
        ("project_id:%(x", 12, "unterminated placeholder"),
        ("project_id:%(x)d", 12, "malformed placeholder"),
        ("role:a and project_id:a%b", 24, "malformed placeholder"),
        ("rule:nope", 6, "unknown rule 'nope'"),
        ("role:a or rule:nope", 16, "unknown rule 'nope'"),
    ],
)
def test_rule_errors_name_the_rule_and_column(rule: str, column: int, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy({"my_rule": rule})
    error = caught.value
    assert isinstance(error, GlimpseError)
    assert error.rule == "my_rule"
    assert error.column == column
    assert problem in error.message
    assert "'my_rule'" in error.message
    assert f"column {column}" in error.message


@pytest.mark.parametrize(
    ("rules", "culprit", "cycle"),
    [
        ({"a": "rule:a"}, "a", "a -> a"),
        ({"a": "rule:b", "b": "rule:a"}, "b", "a -> b -> a"),
        ({"a": "role:x or rule:b", "b": "rule:c", "c": "not rule:a"}, "c", "a -> b -> c -> a"),
        (
            {"context_is_admin": "rule:get_image"},
            "get_image",
            "context_is_admin -> get_image -> context_is_admin",
        ),
    ],
)
def test_reference_cycles_are_refused(rules: dict[str, str], culprit: str, cycle: str) -> None:
    with pytest.raises(PolicyError, match="cycle") as caught:
        Policy(rules)
    assert caught.value.rule == culprit
    assert cycle in caught.value.message


def test_shared_references_are_not_cycles() -> None:
    policy = Policy({"x": "rule:y and rule:y", "y": "rule:z", "z": "@", "w": "rule:x or rule:z"})
    assert policy.check("w", PLAIN, {})


@pytest.mark.parametrize("name", ["", "bad name", "a/b"])
def test_invalid_rule_names_are_refused(name: str) -> None:
    with pytest.raises(PolicyError, match="not valid"):
        Policy({name: "@"})


# --------------------------------------------------------------------------------------------------------
# check / enforce


def test_enforce_raises_forbidden_with_glance_wording() -> None:
    policy = Policy()
    policy.enforce("publicize_image", ctx("p", "admin"), image_target("p", "private"))
    with pytest.raises(Forbidden) as caught:
        policy.enforce(PolicyRule.PUBLICIZE_IMAGE, PLAIN, image_target("p-own", "private"))
    assert caught.value.message == "Policy doesn't allow publicize_image to be performed."


@pytest.mark.parametrize("call", ["check", "enforce"])
def test_unknown_rule_name_is_a_programming_error(call: str) -> None:
    policy = Policy()
    with pytest.raises(PolicyError, match="no_such_rule") as caught:
        getattr(policy, call)("no_such_rule", PLAIN, {})
    assert not isinstance(caught.value, Forbidden)


def test_is_admin_follows_context_is_admin() -> None:
    assert Policy().is_admin(ctx("p", "admin"))
    assert not Policy().is_admin(PLAIN)
    assert Policy({"context_is_admin": "role:cloud_admin"}).is_admin(ctx("p", "cloud_admin"))


def test_image_target_keys() -> None:
    target = image_target("p1", "shared", member_id="p2", member_status="accepted", protected=True)
    assert set(IMAGE_TARGET_KEYS) <= set(target)
    assert target == {
        "project_id": "p1",
        "owner": "p1",
        "visibility": "shared",
        "member_id": "p2",
        "member_status": "accepted",
        "protected": True,
    }
    assert image_target("p1", "private")["member_id"] is None


def test_rules_view_shows_defaults_overrides_and_custom_rules() -> None:
    policy = Policy({"get_image": "!", "mine": "@"})
    assert policy.rules["get_image"] == "!"
    assert policy.rules["mine"] == "@"
    assert policy.rules["delete_image"] == DEFAULTS["delete_image"]
    with pytest.raises(TypeError):
        policy.rules["x"] = "@"  # type: ignore[index]


# --------------------------------------------------------------------------------------------------------
# The shipped defaults

REQUIRED_RULES = {
    "context_is_admin", "default", "get_image", "get_images", "add_image", "modify_image",
    "publicize_image", "communitize_image", "delete_image", "upload_image", "download_image",
    "deactivate", "reactivate", "copy_image", "add_member", "get_member", "get_members",
    "modify_member", "delete_member", "get_task", "get_tasks", "add_task", "modify_task",
    "cancel_image_task", "get_image_history", "tasks_api_access", "stores_info_detail",
    "delete_image_location",
    "get_image_location",
    "set_image_location", "add_image_location", "fetch_image_location", "service_api",
    "get_metrics",
    "metadef_default", "metadef_admin", "get_metadef_namespace", "get_metadef_namespaces",
    "modify_metadef_namespace", "add_metadef_namespace", "delete_metadef_namespace",
    "get_metadef_object", "get_metadef_objects", "modify_metadef_object", "add_metadef_object",
    "delete_metadef_object", "list_metadef_resource_types", "get_metadef_resource_type",
    "add_metadef_resource_type_association", "remove_metadef_resource_type_association",
    "get_metadef_property", "get_metadef_properties", "modify_metadef_property",
    "add_metadef_property", "remove_metadef_property", "get_metadef_tag", "get_metadef_tags",
    "modify_metadef_tag", "add_metadef_tag", "add_metadef_tags", "delete_metadef_tag",
    "delete_metadef_tags",
}  # fmt: skip


def test_default_table_is_complete_and_documented() -> None:
    assert set(DEFAULTS) == REQUIRED_RULES == {str(r) for r in PolicyRule}
    assert len(DEFAULT_RULES) == len(DEFAULTS)
    for rule in DEFAULT_RULES:
        assert rule.description.strip()
        assert "\n" not in rule.description
    assert DEFAULTS["context_is_admin"] == "role:admin"
    assert DEFAULTS["default"] == ""
    assert DEFAULTS["publicize_image"] == "rule:context_is_admin"
    Policy()  # every default parses and every reference resolves


ADMIN = ctx("p-admin", "admin")
OWNER_MEMBER = ctx("p-own", "member", "reader")
OWNER_READER = ctx("p-own", "reader")
OTHER_MEMBER = ctx("p-other", "member", "reader")
OTHER_READER = ctx("p-other", "reader")
SERVICE = ctx("p-service", "service")
NOBODY = ctx("p-own")  # right project, no roles

PRIVATE = image_target("p-own", "private")
PUBLIC = image_target("p-own", "public")
COMMUNITY = image_target("p-own", "community")
SHARED_WITH_OTHER = image_target("p-own", "shared", member_id="p-other", member_status="pending")
SHARED_ELSEWHERE = image_target("p-own", "shared", member_id=None)

TARGETS = {
    "private": PRIVATE,
    "public": PUBLIC,
    "community": COMMUNITY,
    "shared-with-caller": SHARED_WITH_OTHER,
    "shared-elsewhere": SHARED_ELSEWHERE,
}
CALLERS = {
    "admin": ADMIN,
    "owner-member": OWNER_MEMBER,
    "owner-reader": OWNER_READER,
    "other-member": OTHER_MEMBER,
    "other-reader": OTHER_READER,
    "no-roles": NOBODY,
}

T, F = True, False
# rule -> caller -> allowed on (private, public, community, shared-with-caller, shared-elsewhere)
EXPECTED: dict[str, dict[str, tuple[bool, bool, bool, bool, bool]]] = {
    # the visibility filter proper lives in the repository; get_image admits every shared image
    "get_image": {
        "admin": (T, T, T, T, T),
        "owner-member": (T, T, T, T, T),
        "owner-reader": (T, T, T, T, T),
        "other-member": (F, T, T, T, T),
        "other-reader": (F, T, T, T, T),
        "no-roles": (F, F, F, F, F),
    },
    "download_image": {
        "admin": (T, T, T, T, T),
        "owner-member": (T, T, T, T, T),
        "owner-reader": (F, F, F, F, F),
        "other-member": (F, T, T, T, T),
        "other-reader": (F, F, F, F, F),
        "no-roles": (F, F, F, F, F),
    },
    **{
        rule: {
            "admin": (T, T, T, T, T),
            "owner-member": (T, T, T, T, T),
            "owner-reader": (F, F, F, F, F),
            "other-member": (F, F, F, F, F),
            "other-reader": (F, F, F, F, F),
            "no-roles": (F, F, F, F, F),
        }
        for rule in (
            "modify_image",
            "communitize_image",
            "delete_image",
            "upload_image",
            "deactivate",
            "reactivate",
            "add_member",
            "delete_member",
            "set_image_location",
        )
    },
    **{
        rule: {
            "admin": (T, T, T, T, T),
            "owner-member": (F, F, F, F, F),
            "owner-reader": (F, F, F, F, F),
            "other-member": (F, F, F, F, F),
            "other-reader": (F, F, F, F, F),
            "no-roles": (F, F, F, F, F),
        }
        for rule in ("publicize_image", "copy_image", "delete_image_location", "tasks_api_access")
    },
    **{
        rule: {
            "admin": (T, T, T, T, T),
            "owner-member": (T, T, T, T, T),
            "owner-reader": (T, T, T, T, T),
            "other-member": (F, F, F, T, F),
            "other-reader": (F, F, F, T, F),
            "no-roles": (F, F, F, F, F),
        }
        for rule in ("get_member", "get_members")
    },
    "modify_member": {
        "admin": (T, T, T, T, T),
        "owner-member": (F, F, F, F, F),
        "owner-reader": (F, F, F, F, F),
        "other-member": (F, F, F, T, F),
        "other-reader": (F, F, F, F, F),
        "no-roles": (F, F, F, F, F),
    },
    "get_image_location": {
        "admin": (T, T, T, T, T),
        "owner-member": (T, T, T, T, T),
        "owner-reader": (T, T, T, T, T),
        "other-member": (F, F, F, F, F),
        "other-reader": (F, F, F, F, F),
        "no-roles": (F, F, F, F, F),
    },
    "add_image_location": {
        "admin": (T, T, T, T, T),  # through service_api
        "owner-member": (T, T, T, T, T),
        "owner-reader": (F, F, F, F, F),
        "other-member": (F, F, F, F, F),
        "other-reader": (F, F, F, F, F),
        "no-roles": (F, F, F, F, F),
    },
    **{
        rule: dict.fromkeys(CALLERS, (T, T, T, T, T))
        for rule in ("get_task", "get_tasks", "add_task", "modify_task")
    },
}


@pytest.mark.parametrize(
    ("rule", "caller", "target", "expected"),
    [
        pytest.param(rule, caller, target, row[index], id=f"{rule}-{caller}-{target}")
        for rule, by_caller in EXPECTED.items()
        for caller, row in by_caller.items()
        for index, target in enumerate(TARGETS)
    ],
)
def test_default_rules(rule: str, caller: str, target: str, expected: bool) -> None:
    assert Policy().check(rule, CALLERS[caller], TARGETS[target]) is expected


@pytest.mark.parametrize(
    ("rule", "context", "target", "expected"),
    [
        # listing: the target is the caller's own project
        ("get_images", OWNER_READER, {"project_id": "p-own"}, True),
        ("get_images", NOBODY, {"project_id": "p-own"}, False),
        ("get_images", ctx(None, "reader"), {"project_id": None}, False),
        ("get_images", ADMIN, {"project_id": "p-admin"}, True),
        # creating: members create for their own project only
        ("add_image", OWNER_MEMBER, image_target("p-own", "private"), True),
        ("add_image", OWNER_MEMBER, {"project_id": "p-own", "owner": "p-other"}, False),
        ("add_image", OWNER_READER, image_target("p-own", "private"), False),
        ("add_image", ADMIN, image_target("p-anyone", "private"), True),
        # service-to-service rules
        ("fetch_image_location", SERVICE, PRIVATE, True),
        ("fetch_image_location", ADMIN, PRIVATE, True),
        ("fetch_image_location", OWNER_MEMBER, PRIVATE, False),
        ("stores_info_detail", SERVICE, {}, True),
        ("stores_info_detail", ADMIN, {}, True),
        ("stores_info_detail", OWNER_MEMBER, {}, False),
        ("add_image_location", SERVICE, PRIVATE, True),
        # an image with no owner is owned by nobody, even for a caller with no project
        ("modify_image", ctx(None, "member"), image_target(None, "private"), False),
        ("get_image", ctx(None, "reader"), image_target(None, "private"), False),
        # the is_admin flag alone is not admin: context_is_admin is a role check
        ("copy_image", ctx("p", "member", is_admin=True), PRIVATE, False),
        # enum values compare by value
        ("get_image", OTHER_READER, image_target("p-own", Colour.RED), False),
    ],
)
def test_default_rules_other_targets(
    rule: str, context: RequestContext, target: dict[str, object], expected: bool
) -> None:
    assert Policy().check(rule, context, target) is expected


def test_overriding_context_is_admin_changes_every_admin_rule() -> None:
    policy = Policy({"context_is_admin": "role:cloud_admin"})
    assert policy.check("copy_image", ctx("p", "cloud_admin"), PRIVATE)
    assert not policy.check("copy_image", ADMIN, PRIVATE)


def test_overriding_default_changes_task_rules() -> None:
    policy = Policy({"default": "role:admin"})
    assert not policy.check("get_task", OWNER_MEMBER, {})
    assert policy.check("get_task", ADMIN, {})


# --------------------------------------------------------------------------------------------------------
# Policy files


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["policy.yaml", "policy.yml", "policy.conf"])
def test_yaml_file_overrides_and_custom_rules(tmp_path: Path, name: str) -> None:
    path = write(
        tmp_path,
        name,
        "# operators may comment\n"
        'get_image: "!"\n'
        'image_admin: "role:image_admin or rule:context_is_admin"\n'
        "publicize_image: 'rule:image_admin'\n",
    )
    policy = load_policy(path)
    assert not policy.check("get_image", ADMIN, PRIVATE)
    assert policy.check("publicize_image", ctx("p", "image_admin"), PRIVATE)
    assert policy.check("publicize_image", ADMIN, PRIVATE)
    assert not policy.check("publicize_image", OWNER_MEMBER, PRIVATE)
    assert policy.check("delete_image", OWNER_MEMBER, PRIVATE)  # untouched defaults stay


def test_json_file_overrides(tmp_path: Path) -> None:
    rules = {"download_image": "!", "copy_image": "role:member and project_id:%(project_id)s"}
    policy = load_policy(write(tmp_path, "policy.json", json.dumps(rules)))
    assert not policy.check("download_image", ADMIN, PUBLIC)
    assert policy.check("copy_image", OWNER_MEMBER, PRIVATE)
    assert not policy.check("copy_image", OTHER_MEMBER, PRIVATE)


def test_json_content_in_a_yaml_named_file_is_read(tmp_path: Path) -> None:
    policy = load_policy(str(write(tmp_path, "policy.yaml", '{"get_image": "!"}')))
    assert not policy.check("get_image", ADMIN, PUBLIC)


@pytest.mark.parametrize(("name", "text"), [("p.yaml", ""), ("p.yaml", "# nothing\n"), ("p.json", " \n")])
def test_empty_file_keeps_the_defaults(tmp_path: Path, name: str, text: str) -> None:
    assert load_policy(write(tmp_path, name, text)).rules == Policy().rules


@pytest.mark.parametrize(
    ("name", "text", "fragments"),
    [
        ("p.yaml", "get_image: [unclosed\n", ["invalid YAML", "line 2"]),
        ("p.yaml", "a: b\n  c: d\n", ["invalid YAML", "line 2, column 4"]),
        ("p.json", '{"get_image": "!",}', ["invalid JSON", "line 1, column 19"]),
        ("p.json", '{\n  "a": \n}', ["invalid JSON", "line 3, column 1"]),
        ("p.yaml", "- get_image\n", ["expected a mapping", "list"]),
        ("p.json", '"role:admin"', ["expected a mapping", "str"]),
        ("p.yaml", "get_image: 42\n", ["'get_image'", "rule string", "int"]),
        ("p.yaml", 'get_image: "role:reader and"\n', ["'get_image'", "column 16", "expected a check"]),
        ("p.yaml", 'mine: "rule:missing"\n', ["'mine'", "unknown rule 'missing'", "column 6"]),
        ("p.yaml", 'a: "rule:b"\nb: "rule:a"\n', ["cycle", "a -> b -> a"]),
    ],
)
def test_malformed_files_are_refused_clearly(
    tmp_path: Path, name: str, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(path) in caught.value.message
    for fragment in fragments:
        assert fragment in caught.value.message


def test_rule_errors_from_a_file_keep_rule_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", 'get_image: "role:reader and"\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert (caught.value.rule, caught.value.column) == ("get_image", 16)


@pytest.mark.parametrize(
    ("text", "found"), [("t: true\n", "bool"), ("t:\n", "nothing"), ("t: [a]\n", "list")]
)
def test_non_string_rule_values_are_refused(tmp_path: Path, text: str, found: str) -> None:
    with pytest.raises(PolicyError, match=f"rule string, found {found}") as caught:
        load_policy(write(tmp_path, "p.yaml", text))
    assert caught.value.rule == "t"


def test_non_string_rule_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="rule name 42 is not valid"):
        load_policy(write(tmp_path, "p.yaml", '42: "@"\n'))


def test_no_policy_file_means_the_defaults() -> None:
    assert load_policy(None).rules == Policy().rules == DEFAULTS


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "absent.yaml")


def test_unquoted_yaml_bang_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="quote it") as caught:
        load_policy(write(tmp_path, "p.yaml", "download_image: !\n"))
    assert caught.value.rule == "download_image"


def test_operator_page_lists_every_default() -> None:
    page = (Path(__file__).parents[2] / "docs" / "policy.md").read_text(encoding="utf-8")
    for rule in DEFAULT_RULES:
        shown = f"`{rule.default}`" if rule.default else "*(empty: always)*"
        assert f"| `{rule.name}` | {shown} | {rule.description} |" in page
