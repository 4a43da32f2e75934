"""Property protections: who may create, read, update and delete which custom image properties.

An operator writes Glance's ``property_protection_file``: an INI file whose every section name is a
regular expression of property names, with the options ``create``, ``read``, ``update`` and
``delete``. With ``property_protection_rule_format = roles`` each value is a comma-separated list of
roles; with ``policies`` it is one policy rule name. ``@`` lets anyone do the operation and ``!``
lets no one. The sections are tried in the order of the file and the first whose expression is
found in the property name (a search, not a full match: anchor it with ``^``/``$``) decides; a
property that no section matches may not be touched at all, so files end with a ``[.*]`` catch-all.

This module turns the sections (read by :mod:`glimpse.property_protection_file`) into
:class:`PropertyProtections` and answers :meth:`PropertyProtections.allows`. It reads no files.
Base attributes (``name``, ``visibility``, ...) are never subject to it, nor are the properties the
service itself keeps (``os_glance_*``), which users may not write in any case.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from glimpse.errors import ConfigError

__all__ = [
    "ANYONE",
    "NOBODY",
    "OPERATIONS",
    "PropertyOperation",
    "PropertyProtections",
    "ProtectionRule",
    "RuleFormat",
]

ANYONE: Final = "@"
NOBODY: Final = "!"


class RuleFormat(enum.StrEnum):
    """``property_protection_rule_format``: what the values of the file name."""

    ROLES = "roles"
    POLICIES = "policies"


class PropertyOperation(enum.StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"


OPERATIONS: Final = tuple(PropertyOperation)


@dataclass(frozen=True, slots=True)
class ProtectionRule:
    """One section: the expression and, per operation, who may do it.

    ``allowed`` holds lowercase role names (``roles`` format) or one policy rule name (``policies``
    format), or exactly ``("@",)`` / ``("!",)``; an empty tuple (the option left empty) lets no one.
    """

    section: str
    pattern: re.Pattern[str]
    allowed: Mapping[PropertyOperation, tuple[str, ...]]


class PropertyProtections:
    """The rules of one property protection file, checked once; immutable and shared between threads.

    :meth:`none` gives the object used when no file is configured: it allows everything.
    """

    __slots__ = ("rule_format", "rules")

    def __init__(self, rules: Sequence[ProtectionRule], rule_format: RuleFormat) -> None:
        self.rules = tuple(rules)
        self.rule_format = rule_format

    @classmethod
    def none(cls) -> PropertyProtections:
        return cls((), RuleFormat.ROLES)

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    @classmethod
    def from_sections(
        cls, sections: Iterable[tuple[str, Mapping[str, str]]], rule_format: RuleFormat | str
    ) -> PropertyProtections:
        """Check and compile the sections, in file order; a section that cannot be used is a
        :class:`ConfigError` naming it and saying what to write instead."""
        try:
            fmt = RuleFormat(rule_format)
        except ValueError:
            raise ConfigError(
                f"property_protection_rule_format = {rule_format!r} is not valid; write roles or policies."
            ) from None
        rules = [_rule(section, options, fmt) for section, options in sections]
        if not rules:
            raise ConfigError(
                "the property protection file has no sections; write one section per property name "
                "expression (end with [.*]), or unset property_protection_file."
            )
        return cls(rules, fmt)

    def policy_rules(self) -> set[str]:
        """The policy rule names the file refers to (``policies`` format), which must exist."""
        if self.rule_format != RuleFormat.POLICIES:
            return set()
        return {
            name
            for rule in self.rules
            for names in rule.allowed.values()
            for name in names
            if name not in (ANYONE, NOBODY)
        }

    def rule_for(self, name: str) -> ProtectionRule | None:
        """The first section whose expression is found in ``name``, or None."""
        return next((rule for rule in self.rules if rule.pattern.search(name)), None)

    def allows(
        self,
        name: str,
        operation: PropertyOperation,
        roles: Iterable[str],
        check_policy: Callable[[str], bool],
    ) -> bool:
        """Whether a caller with ``roles`` may do ``operation`` to the property ``name``.

        ``check_policy`` answers whether a policy rule holds for the caller (``policies`` format).
        Roles are compared without regard to case. No role is special: an administrator is refused
        what the file does not grant to one of its roles.
        """
        if not self.rules:
            return True
        rule = self.rule_for(name)
        if rule is None:
            return False
        allowed = rule.allowed[operation]
        if not allowed or NOBODY in allowed:
            return False
        if ANYONE in allowed:
            return True
        if self.rule_format == RuleFormat.POLICIES:
            return check_policy(allowed[0])
        held = {role.lower() for role in roles}
        return any(role in held for role in allowed)


def _rule(section: str, options: Mapping[str, str], fmt: RuleFormat) -> ProtectionRule:
    try:
        pattern = re.compile(section)
    except re.error as exc:
        raise ConfigError(
            f"[{section}] is not a valid regular expression ({exc}); the section names of the "
            "property protection file are Python regular expressions of property names."
        ) from None
    unknown = sorted(set(options) - {str(op) for op in OPERATIONS})
    if unknown:
        raise ConfigError(
            f"[{section}] has unknown option(s) {', '.join(unknown)}; "
            "the options are create, read, update and delete."
        )
    allowed: dict[PropertyOperation, tuple[str, ...]] = {}
    for operation in OPERATIONS:
        if operation not in options:
            raise ConfigError(
                f"[{section}] has no '{operation}' option; give every section create, read, update "
                "and delete (write '!' to let no one)."
            )
        allowed[operation] = _values(section, operation, options[operation], fmt)
    return ProtectionRule(section, pattern, allowed)


def _values(section: str, operation: str, text: str, fmt: RuleFormat) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    where = f"[{section}] {operation} = {text.strip()}"
    if ANYONE in values and NOBODY in values:
        raise ConfigError(f"{where}: '@' (anyone) and '!' (no one) cannot be combined; keep one.")
    if fmt == RuleFormat.POLICIES:
        if len(values) > 1:
            raise ConfigError(
                f"{where}: the policies format takes one policy rule per operation; combine rules in "
                "the policy file (for example 'my_rule: rule:a or rule:b') and name that one."
            )
        return values
    return tuple(v.lower() for v in values)
