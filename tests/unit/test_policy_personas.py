"""The persona table of docs/policy.md is the one the shipped rules give, and it says what Glance's
secure-RBAC defaults say."""

from __future__ import annotations

from pathlib import Path

from glimpse.domain.personas import PERSONAS, allowed, persona_table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def _documented() -> str:
    page = PAGE.read_text()
    return page.split("<!-- personas:start -->\n", 1)[1].split("<!-- personas:end -->\n", 1)[0]


def test_the_documented_table_is_the_generated_one() -> None:
    assert _documented() == persona_table(), "run: .venv/bin/python scripts/policy_personas.py"


def test_an_override_changes_the_generated_answer() -> None:
    member = next(p for p in PERSONAS if p.label == "project member")
    assert allowed("upload_image", member)
    assert not allowed("upload_image", member, {"upload_image": "role:admin"})


def test_the_personas_get_glances_secure_rbac_answers() -> None:
    by_label = {p.label: p for p in PERSONAS}
    reader, member = by_label["project reader"], by_label["project member"]
    assert allowed("get_image", reader)
    assert not allowed("upload_image", reader)
    assert allowed("upload_image", member)
    assert not allowed("publicize_image", member)
    assert allowed("copy_image", by_label["project admin"])
    assert not allowed("copy_image", member)
    service = by_label["service (role service only)"]
    assert allowed("fetch_image_location", service)
    assert not allowed("get_image", service)
    shared = by_label["member of the project it is shared with"]
    assert allowed("modify_member", shared)
    assert not allowed("modify_image", shared)
    # A system-scoped token fits no image rule unless enforce_scope is off.
    assert not allowed("get_images", by_label["system admin"])
    assert allowed("get_images", by_label["system admin, enforce_scope = false"])
