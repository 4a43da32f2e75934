"""The Keystone personas of secure RBAC, and which rules of the shipped policy allow each of them.

``docs/policy.md`` shows :func:`persona_table` between its ``personas`` markers;
``scripts/policy_personas.py`` rewrites it there, and a unit test fails when the two disagree, so the
documentation cannot drift from :data:`glimpse.domain.policy.DEFAULT_RULES`.

Every image rule is asked about the same image: owned by project ``P``, visibility ``shared``, shared with
project ``Q`` (membership accepted). ``get_images`` is asked about the caller's own project, and the task
and store rules have no target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from glimpse.context import RequestContext
from glimpse.domain.policy import DEFAULT_RULES, Policy, PolicyRule, image_target

OWNER: Final = "P"
SHARED_WITH: Final = "Q"
_NO_IMAGE: Final = frozenset(
    {
        PolicyRule.CONTEXT_IS_ADMIN,
        PolicyRule.DEFAULT,
        PolicyRule.SERVICE_API,
        PolicyRule.GET_TASK,
        PolicyRule.GET_TASKS,
        PolicyRule.ADD_TASK,
        PolicyRule.MODIFY_TASK,
        PolicyRule.TASKS_API_ACCESS,
        PolicyRule.STORES_INFO_DETAIL,
    }
)


@dataclass(frozen=True, slots=True)
class Persona:
    """A kind of caller: a column of the table."""

    label: str
    context: RequestContext
    enforce_scope: bool = True


def _ctx(project: str | None, *roles: str, system: bool = False) -> RequestContext:
    return RequestContext(
        user_id="u", project_id=project, roles=roles, system_scope="all" if system else None
    )


#: The columns of the table, in order.
PERSONAS: Final[tuple[Persona, ...]] = (
    Persona("project reader", _ctx(OWNER, "reader")),
    Persona("project member", _ctx(OWNER, "member", "reader")),
    Persona("project admin", _ctx(OWNER, "admin", "member", "reader")),
    Persona("member of the project it is shared with", _ctx(SHARED_WITH, "member", "reader")),
    Persona("service (role service only)", _ctx("S", "service")),
    Persona("system reader", _ctx(None, "reader", system=True)),
    Persona("system admin", _ctx(None, "admin", "member", "reader", system=True)),
    Persona(
        "system admin, enforce_scope = false",
        _ctx(None, "admin", "member", "reader", system=True),
        enforce_scope=False,
    ),
)


def _target(rule: str, context: RequestContext) -> Mapping[str, object]:
    if rule == PolicyRule.GET_IMAGES:
        return {"project_id": context.project_id}
    if rule in _NO_IMAGE:
        return {}
    shared = context.project_id == SHARED_WITH
    return image_target(
        OWNER,
        "shared",
        member_id=SHARED_WITH if shared else None,
        member_status="accepted" if shared else None,
        protected=False,
    )


def allowed(rule: str, persona: Persona, overrides: Mapping[str, str] | None = None) -> bool:
    """Whether the shipped rules (plus ``overrides``) allow ``persona`` the rule, scope included."""
    policy = Policy(overrides, enforce_scope=persona.enforce_scope)
    context = replace(persona.context, is_admin=policy.is_admin(persona.context))
    return policy.check(rule, context, _target(rule, context))


def persona_table() -> str:
    """The Markdown table of rules (rows) by personas (columns): ✓ allowed, · refused."""
    lines = [
        "| Rule | " + " | ".join(p.label for p in PERSONAS) + " |",
        "|---|" + "---|" * len(PERSONAS),
    ]
    for rule in DEFAULT_RULES:
        marks = ("✓" if allowed(rule.name, persona) else "·" for persona in PERSONAS)
        lines.append(f"| `{rule.name}` | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"
