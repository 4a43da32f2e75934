"""Authorisation: named rules, their Glance-compatible defaults, and a small engine that evaluates them.

Every API operation is guarded by one named rule (``get_image``, ``publicize_image``, ...). A rule is a string
in the oslo.policy language; :data:`DEFAULT_RULES` holds the defaults, which follow Glance's secure-RBAC
defaults (``admin`` / ``member`` / ``reader`` roles, ``project_id:%(project_id)s`` ownership checks). An
operator may replace any rule, or add custom ones, with a policy file (see ``docs/policy.md``).

The rule language::

    expr   := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | "(" expr ")" | check
    check  := "@"                          always
            | "!"                          never
            | "role:" value                the caller has that role (case-insensitive)
            | "rule:" name                 the named rule allows it
            | cred ":" value               a caller attribute (user_id, project_id, is_admin) equals value
            | quoted ":" value             a quoted literal ('...' or "...") equals value
    value  := text with %(target_key)s placeholders filled from the target, or a quoted constant

An empty rule always allows. A placeholder naming a missing target key, or a ``None`` on either side of a
comparison, never matches. Booleans compare as ``"True"`` / ``"False"``. Every rule is parsed once, when the
:class:`Policy` is built; syntax errors, unknown ``rule:`` references and reference cycles are reported
then, as :class:`PolicyError`, with the rule name and a 1-based column.

Targets are plain mappings. For images build them with :func:`image_target`; its keys are:

``project_id``
    the image owner (the project the ownership checks compare the caller's project with)
``owner``
    the image owner as well; for ``add_image`` it is the owner the caller asked for
``visibility``
    ``public``, ``community``, ``shared`` or ``private``
``member_id``
    the caller's project when that project is a member of the image (any member status), else ``None``
``member_status``
    that membership's status (``pending``, ``accepted``, ``rejected``), else ``None``
``protected``
    whether the image is protected (pass it through ``extra``)

Operations with no image (``get_images``, ``add_task``, ...) take ``{"project_id": <caller's project>}``
or an empty mapping. The policy only answers "may this caller do this to this target"; which images a
caller can see at all is decided by the repository, and an image the caller may not see is reported as
404, never 403.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

import yaml

from glimpse.context import RequestContext
from glimpse.errors import Forbidden, GlimpseError

__all__ = [
    "DEFAULTS",
    "DEFAULT_RULES",
    "IMAGE_TARGET_KEYS",
    "Policy",
    "PolicyError",
    "PolicyRule",
    "RuleDefault",
    "image_target",
]


class PolicyError(GlimpseError):
    """A policy rule or policy file cannot be used, or code asked for a rule that does not exist.

    ``rule`` names the offending rule when there is one; ``column`` is the 1-based position in its text.
    """

    def __init__(self, message: str, *, rule: str | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.column = column


class PolicyRule(enum.StrEnum):
    """The rule names the service enforces; each is documented in :data:`DEFAULT_RULES`."""

    CONTEXT_IS_ADMIN = "context_is_admin"
    DEFAULT = "default"
    SERVICE_API = "service_api"
    ADD_IMAGE = "add_image"
    GET_IMAGE = "get_image"
    GET_IMAGES = "get_images"
    MODIFY_IMAGE = "modify_image"
    PUBLICIZE_IMAGE = "publicize_image"
    COMMUNITIZE_IMAGE = "communitize_image"
    DELETE_IMAGE = "delete_image"
    UPLOAD_IMAGE = "upload_image"
    DOWNLOAD_IMAGE = "download_image"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    COPY_IMAGE = "copy_image"
    GET_IMAGE_LOCATION = "get_image_location"
    SET_IMAGE_LOCATION = "set_image_location"
    DELETE_IMAGE_LOCATION = "delete_image_location"
    ADD_IMAGE_LOCATION = "add_image_location"
    FETCH_IMAGE_LOCATION = "fetch_image_location"
    ADD_MEMBER = "add_member"
    GET_MEMBER = "get_member"
    GET_MEMBERS = "get_members"
    MODIFY_MEMBER = "modify_member"
    DELETE_MEMBER = "delete_member"
    GET_TASK = "get_task"
    GET_TASKS = "get_tasks"
    ADD_TASK = "add_task"
    MODIFY_TASK = "modify_task"
    TASKS_API_ACCESS = "tasks_api_access"
    STORES_INFO_DETAIL = "stores_info_detail"


@dataclass(frozen=True, slots=True)
class RuleDefault:
    """One rule as shipped: its name, its default rule string and what it guards."""

    name: str
    default: str
    description: str


# Building blocks of the defaults, so each ownership idea is spelled once.
_ADMIN = "rule:context_is_admin"
_OWNER_MEMBER = "role:member and project_id:%(project_id)s"
_OWNER_READER = "role:reader and project_id:%(project_id)s"
_ANY_VISIBLE = (
    "project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s"
    " or 'public':%(visibility)s or 'shared':%(visibility)s"
)
_ADMIN_OR_OWNER_MEMBER = f"{_ADMIN} or ({_OWNER_MEMBER})"
_ADMIN_OR_OWNER_READER = f"{_ADMIN} or ({_OWNER_READER})"
_ADMIN_OR_READER_OF_OWNER_OR_MEMBER = (
    f"{_ADMIN} or role:reader and (project_id:%(project_id)s or project_id:%(member_id)s)"
)

_R = PolicyRule

#: Every shipped rule, in the order the operator documentation lists them.
DEFAULT_RULES: Final[tuple[RuleDefault, ...]] = (
    RuleDefault(
        _R.CONTEXT_IS_ADMIN,
        "role:admin",
        "Who is an administrator; other rules use it as rule:context_is_admin.",
    ),
    RuleDefault(_R.DEFAULT, "", "Fallback that the task rules refer to; empty means anyone."),
    RuleDefault(
        _R.SERVICE_API,
        "role:service or role:admin",
        "Service-to-service callers such as compute and volume services.",
    ),
    RuleDefault(
        _R.ADD_IMAGE,
        f"{_ADMIN} or (role:member and project_id:%(project_id)s and project_id:%(owner)s)",
        "Create an image record (POST /v2/images) owned by the caller's own project.",
    ),
    RuleDefault(
        _R.GET_IMAGE,
        f"{_ADMIN} or (role:reader and ({_ANY_VISIBLE}))",
        "Show one image (GET /v2/images/{image_id}); a refusal is reported as 404.",
    ),
    RuleDefault(
        _R.GET_IMAGES,
        _ADMIN_OR_OWNER_READER,
        "List images (GET /v2/images); the target is the caller's project.",
    ),
    RuleDefault(
        _R.MODIFY_IMAGE,
        _ADMIN_OR_OWNER_MEMBER,
        "Change an image: PATCH, staging data, starting a non-copy import.",
    ),
    RuleDefault(
        _R.PUBLICIZE_IMAGE, _ADMIN, "Make an image public (create it public or PATCH visibility to public)."
    ),
    RuleDefault(_R.COMMUNITIZE_IMAGE, _ADMIN_OR_OWNER_MEMBER, "Make an image community-visible."),
    RuleDefault(_R.DELETE_IMAGE, _ADMIN_OR_OWNER_MEMBER, "Delete an image (DELETE /v2/images/{image_id})."),
    RuleDefault(
        _R.UPLOAD_IMAGE, _ADMIN_OR_OWNER_MEMBER, "Upload image data (PUT /v2/images/{image_id}/file)."
    ),
    RuleDefault(
        _R.DOWNLOAD_IMAGE,
        f"{_ADMIN} or (role:member and ({_ANY_VISIBLE}))",
        "Download image data (GET /v2/images/{image_id}/file).",
    ),
    RuleDefault(_R.DEACTIVATE, _ADMIN_OR_OWNER_MEMBER, "Deactivate an image (POST .../actions/deactivate)."),
    RuleDefault(_R.REACTIVATE, _ADMIN_OR_OWNER_MEMBER, "Reactivate an image (POST .../actions/reactivate)."),
    RuleDefault(
        _R.COPY_IMAGE, _ADMIN, "Copy an active image's data to more stores (import method copy-image)."
    ),
    RuleDefault(_R.GET_IMAGE_LOCATION, _ADMIN_OR_OWNER_READER, "See an image's locations and direct_url."),
    RuleDefault(
        _R.SET_IMAGE_LOCATION, _ADMIN_OR_OWNER_MEMBER, "Add or replace image locations through PATCH."
    ),
    RuleDefault(_R.DELETE_IMAGE_LOCATION, _ADMIN, "Remove image locations through PATCH."),
    RuleDefault(
        _R.ADD_IMAGE_LOCATION,
        f"rule:service_api or ({_OWNER_MEMBER})",
        "Add a location to a queued image (POST /v2/images/{image_id}/locations).",
    ),
    RuleDefault(
        _R.FETCH_IMAGE_LOCATION,
        "rule:service_api",
        "List locations with store ids (GET /v2/images/{image_id}/locations).",
    ),
    RuleDefault(
        _R.ADD_MEMBER, _ADMIN_OR_OWNER_MEMBER, "Share an image with another project (POST .../members)."
    ),
    RuleDefault(
        _R.GET_MEMBER,
        _ADMIN_OR_READER_OF_OWNER_OR_MEMBER,
        "Show one image member (GET .../members/{member_id}).",
    ),
    RuleDefault(
        _R.GET_MEMBERS, _ADMIN_OR_READER_OF_OWNER_OR_MEMBER, "List an image's members (GET .../members)."
    ),
    RuleDefault(
        _R.MODIFY_MEMBER,
        f"{_ADMIN} or (role:member and project_id:%(member_id)s)",
        "Accept or reject a share; only the member project answers (PUT .../members/{member_id}).",
    ),
    RuleDefault(
        _R.DELETE_MEMBER,
        _ADMIN_OR_OWNER_MEMBER,
        "Stop sharing an image with a project (DELETE .../members/{member_id}).",
    ),
    RuleDefault(_R.GET_TASK, "rule:default", "Show one task (GET /v2/tasks/{task_id})."),
    RuleDefault(_R.GET_TASKS, "rule:default", "List tasks (GET /v2/tasks)."),
    RuleDefault(_R.ADD_TASK, "rule:default", "Create a task (POST /v2/tasks)."),
    RuleDefault(_R.MODIFY_TASK, "rule:default", "Change a task."),
    RuleDefault(
        _R.TASKS_API_ACCESS, _ADMIN, "Use the /v2/tasks API at all (deprecated, for administrators)."
    ),
    RuleDefault(
        _R.STORES_INFO_DETAIL,
        f"{_ADMIN} or rule:service_api",
        "See store details (GET /v2/info/stores/detail).",
    ),
)

#: Rule name -> default rule string.
DEFAULTS: Final[Mapping[str, str]] = MappingProxyType({str(r.name): r.default for r in DEFAULT_RULES})

#: The keys :func:`image_target` always sets.
IMAGE_TARGET_KEYS: Final[tuple[str, ...]] = (
    "project_id",
    "owner",
    "visibility",
    "member_id",
    "member_status",
)


def image_target(
    owner: str | None,
    visibility: object,
    member_id: str | None = None,
    member_status: object = None,
    **extra: object,
) -> dict[str, object]:
    """The target for an image rule; ``extra`` adds keys such as ``protected`` or overrides the others."""
    target: dict[str, object] = {
        "project_id": owner,
        "owner": owner,
        "visibility": visibility,
        "member_id": member_id,
        "member_status": member_status,
    }
    target.update(extra)
    return target


# --------------------------------------------------------------------------------------------------------
# Evaluation


def _text(value: object) -> str | None:
    """How a value from a context or target is compared: ``None`` stays ``None``, the rest becomes text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, enum.Enum):
        return _text(value.value)
    return str(value)


@dataclass(frozen=True, slots=True)
class _Env:
    roles: frozenset[str]
    creds: Mapping[str, str | None]
    target: Mapping[str, object]
    rules: Mapping[str, _Node]


@dataclass(frozen=True, slots=True)
class _Field:
    name: str


@dataclass(frozen=True, slots=True)
class _Value:
    """The right-hand side of a check: constant text and ``%(key)s`` placeholders."""

    parts: tuple[str | _Field, ...]

    def render(self, target: Mapping[str, object]) -> str | None:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, _Field):
                value = _text(target.get(part.name))
                if value is None:
                    return None
                out.append(value)
            else:
                out.append(part)
        return "".join(out)


class _Node:
    """A compiled rule, or part of one."""

    __slots__ = ()

    def evaluate(self, env: _Env) -> bool:
        raise NotImplementedError

    def references(self) -> list[tuple[str, int]]:
        """``(rule name, 0-based offset)`` of every ``rule:`` reference in this node."""
        return []


@dataclass(frozen=True, slots=True)
class _Constant(_Node):
    result: bool

    def evaluate(self, env: _Env) -> bool:
        return self.result


@dataclass(frozen=True, slots=True)
class _RoleCheck(_Node):
    role: _Value

    def evaluate(self, env: _Env) -> bool:
        role = self.role.render(env.target)
        return role is not None and role.lower() in env.roles


@dataclass(frozen=True, slots=True)
class _RuleRef(_Node):
    name: str
    offset: int

    def evaluate(self, env: _Env) -> bool:
        return env.rules[self.name].evaluate(env)

    def references(self) -> list[tuple[str, int]]:
        return [(self.name, self.offset)]


@dataclass(frozen=True, slots=True)
class _CredCheck(_Node):
    cred: str
    value: _Value

    def evaluate(self, env: _Env) -> bool:
        mine = env.creds.get(self.cred)
        return mine is not None and mine == self.value.render(env.target)


@dataclass(frozen=True, slots=True)
class _LiteralCheck(_Node):
    literal: str
    value: _Value

    def evaluate(self, env: _Env) -> bool:
        return self.literal == self.value.render(env.target)


@dataclass(frozen=True, slots=True)
class _Not(_Node):
    operand: _Node

    def evaluate(self, env: _Env) -> bool:
        return not self.operand.evaluate(env)

    def references(self) -> list[tuple[str, int]]:
        return self.operand.references()


@dataclass(frozen=True, slots=True)
class _And(_Node):
    operands: tuple[_Node, ...]

    def evaluate(self, env: _Env) -> bool:
        return all(op.evaluate(env) for op in self.operands)

    def references(self) -> list[tuple[str, int]]:
        return [ref for op in self.operands for ref in op.references()]


@dataclass(frozen=True, slots=True)
class _Or(_Node):
    operands: tuple[_Node, ...]

    def evaluate(self, env: _Env) -> bool:
        return any(op.evaluate(env) for op in self.operands)

    def references(self) -> list[tuple[str, int]]:
        return [ref for op in self.operands for ref in op.references()]


_ALWAYS: Final = _Constant(True)
_NEVER: Final = _Constant(False)


# --------------------------------------------------------------------------------------------------------
# Parsing

#: Caller attributes a check may compare (``<cred>:<value>``).
_CREDENTIALS: Final = ("user_id", "project_id", "is_admin")
_KEYWORDS: Final = frozenset({"and", "or", "not"})
_QUOTES: Final = "'\""
_PLACEHOLDER = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)s")
_RULE_NAME = re.compile(r"[A-Za-z0-9_.:\-]+")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(", ")", "and", "or", "not", "check", "end"
    text: str
    offset: int


class _Parser:
    """Recursive descent over one rule string; raises :class:`PolicyError` naming the rule and column."""

    def __init__(self, rule: str, text: str) -> None:
        self._rule = rule
        self._text = text
        self._tokens = self._tokenize()
        self._index = 0

    def error(self, offset: int, problem: str) -> PolicyError:
        column = offset + 1
        return PolicyError(
            f"Policy rule {self._rule!r}: {problem} at column {column} of {self._text!r}.",
            rule=self._rule,
            column=column,
        )

    def _tokenize(self) -> list[_Token]:
        text, tokens, i = self._text, [], 0
        while i < len(text):
            char = text[i]
            if char.isspace():
                i += 1
            elif char in "()":
                tokens.append(_Token(char, char, i))
                i += 1
            else:
                start = i
                while i < len(text) and not text[i].isspace() and text[i] not in "()":
                    if text[i] in _QUOTES:
                        end = text.find(text[i], i + 1)
                        if end < 0:
                            raise self.error(i, f"unterminated quote {text[i]}")
                        i = end + 1
                    elif text.startswith("%(", i):
                        end = text.find(")", i + 2)
                        if end < 0:
                            raise self.error(i, "unterminated placeholder (write %(name)s)")
                        i = end + 1
                    else:
                        i += 1
                word = text[start:i]
                kind = word.lower() if word.lower() in _KEYWORDS else "check"
                tokens.append(_Token(kind, word, start))
        tokens.append(_Token("end", "", len(text)))
        return tokens

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _take(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def parse(self) -> _Node:
        if self._peek().kind == "end":
            return _ALWAYS
        node = self._or()
        token = self._peek()
        if token.kind == ")":
            raise self.error(token.offset, "unexpected ')'")
        if token.kind != "end":
            raise self.error(token.offset, f"expected 'and' or 'or' before {token.text!r}")
        return node

    def _or(self) -> _Node:
        operands = [self._and()]
        while self._peek().kind == "or":
            self._take()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else _Or(tuple(operands))

    def _and(self) -> _Node:
        operands = [self._not()]
        while self._peek().kind == "and":
            self._take()
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else _And(tuple(operands))

    def _not(self) -> _Node:
        token = self._take()
        if token.kind == "not":
            return _Not(self._not())
        if token.kind == "(":
            node = self._or()
            closing = self._take()
            if closing.kind != ")":
                raise self.error(
                    closing.offset, f"expected ')' to close the '(' at column {token.offset + 1}"
                )
            return node
        if token.kind == "check":
            return self._check(token.text, token.offset)
        found = "the end of the rule" if token.kind == "end" else repr(token.text)
        raise self.error(token.offset, f"expected a check, 'not' or '(' but found {found}")

    def _check(self, word: str, offset: int) -> _Node:
        if word == "@":
            return _ALWAYS
        if word == "!":
            return _NEVER
        if word[0] in _QUOTES:
            end = word.index(word[0], 1)
            if word[end + 1 : end + 2] != ":":
                raise self.error(offset + end + 1, "expected ':' after the quoted literal")
            return _LiteralCheck(word[1:end], self._value(word[end + 2 :], offset + end + 2))
        kind, colon, rest = word.partition(":")
        if not colon:
            raise self.error(offset, f"expected a check such as role:<name> or rule:<name>, found {word!r}")
        value_offset = offset + len(kind) + 1
        if not rest:
            raise self.error(value_offset, f"missing value after '{kind}:'")
        if kind == "rule":
            if not _RULE_NAME.fullmatch(rest):
                raise self.error(value_offset, f"invalid rule name {rest!r}")
            return _RuleRef(rest, value_offset)
        if kind == "role":
            return _RoleCheck(self._value(rest, value_offset))
        if kind in _CREDENTIALS:
            return _CredCheck(kind, self._value(rest, value_offset))
        raise self.error(
            offset,
            f"unknown check {kind!r} (use role:, rule:, {', '.join(c + ':' for c in _CREDENTIALS)}"
            " or a quoted literal)",
        )

    def _value(self, text: str, offset: int) -> _Value:
        if not text:
            raise self.error(offset, "missing value after ':'")
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
            return _Value((text[1:-1],))
        parts: list[str | _Field] = []
        i = 0
        while i < len(text):
            j = text.find("%", i)
            if j < 0:
                parts.append(text[i:])
                break
            if j > i:
                parts.append(text[i:j])
            if text.startswith("%%", j):
                parts.append("%")
                i = j + 2
                continue
            match = _PLACEHOLDER.match(text, j)
            if match is None:
                raise self.error(offset + j, "malformed placeholder (write %(name)s)")
            parts.append(_Field(match.group(1)))
            i = match.end()
        return _Value(tuple(parts))


def _compile(name: str, text: str) -> _Node:
    return _Parser(name, text).parse()


def _check_references(sources: Mapping[str, str], compiled: Mapping[str, _Node]) -> None:
    """Fail on a ``rule:`` reference to an unknown rule, or on rules that refer to each other in a cycle."""
    for name, node in compiled.items():
        for target, offset in node.references():
            if target not in compiled:
                raise PolicyError(
                    f"Policy rule {name!r}: unknown rule {target!r} at column {offset + 1}"
                    f" of {sources[name]!r}.",
                    rule=name,
                    column=offset + 1,
                )
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        path.append(name)
        for target, offset in compiled[name].references():
            if target in path:
                cycle = " -> ".join([*path[path.index(target) :], target])
                raise PolicyError(
                    f"Policy rule {name!r}: rules refer to each other in a cycle ({cycle}) at column"
                    f" {offset + 1} of {sources[name]!r}.",
                    rule=name,
                    column=offset + 1,
                )
            if target not in done:
                visit(target)
        path.pop()
        done.add(name)

    for name in compiled:
        if name not in done:
            visit(name)


# --------------------------------------------------------------------------------------------------------
# The policy


def _read_policy_file(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"Policy file {path}: cannot be read ({exc}).") from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise PolicyError(
                f"Policy file {path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
            ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"Policy file {path}: invalid YAML{where}: {problem}.") from exc


class Policy:
    """The shipped defaults with an operator's overrides applied, every rule parsed and checked once.

    Build it once at start-up (:meth:`from_file` when ``[oslo_policy] policy_file`` is set) and pass it
    down; it is immutable and safe to share between threads.
    """

    __slots__ = ("_compiled", "_sources")

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        sources = dict(DEFAULTS)
        for name, text in (overrides or {}).items():
            if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
                raise PolicyError(
                    f"Policy rule name {name!r} is not valid (letters, digits, '_', '.', ':', '-')."
                )
            if not isinstance(text, str):
                found = "nothing" if text is None else type(text).__name__
                raise PolicyError(
                    f"Policy rule {name!r}: the value must be a rule string, found {found}"
                    ' (in YAML, quote it: "!", "@", "" for always).',
                    rule=name,
                )
            sources[name] = text
        compiled = {name: _compile(name, text) for name, text in sources.items()}
        _check_references(sources, compiled)
        self._sources: Mapping[str, str] = MappingProxyType(sources)
        self._compiled: Mapping[str, _Node] = MappingProxyType(compiled)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """Defaults plus the rules in an oslo-style policy file: a YAML or JSON mapping of name -> rule.

        Files ending in ``.json`` are read as JSON, anything else as YAML. An empty file changes nothing.
        """
        file = Path(path)
        data = _read_policy_file(file)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PolicyError(
                f"Policy file {file}: expected a mapping of rule name to rule string,"
                f" found {type(data).__name__}."
            )
        try:
            return cls(data)
        except PolicyError as exc:
            raise PolicyError(f"Policy file {file}: {exc.message}", rule=exc.rule, column=exc.column) from exc

    @property
    def rules(self) -> Mapping[str, str]:
        """Every rule in force (defaults, overrides and custom rules): name -> rule string."""
        return self._sources

    def check(self, rule: str, context: RequestContext, target: Mapping[str, object]) -> bool:
        """Whether ``rule`` allows ``context`` to act on ``target``; an unknown rule is a PolicyError."""
        node = self._compiled.get(rule)
        if node is None:
            raise PolicyError(f"No policy rule named {rule!r} exists.", rule=rule)
        env = _Env(
            roles=frozenset(role.lower() for role in context.roles),
            creds={
                "user_id": _text(context.user_id),
                "project_id": _text(context.project_id),
                "is_admin": _text(context.is_admin),
            },
            target=target,
            rules=self._compiled,
        )
        return node.evaluate(env)

    def enforce(self, rule: str, context: RequestContext, target: Mapping[str, object]) -> None:
        """Raise :class:`~glimpse.errors.Forbidden` unless ``rule`` allows it.

        Callers that guard an image the caller may not be able to see turn this into NotFound themselves.
        """
        if not self.check(rule, context, target):
            raise Forbidden(f"Policy doesn't allow {rule} to be performed.")

    def is_admin(self, context: RequestContext) -> bool:
        """Whether ``context_is_admin`` holds for the caller (how the auth layer sets ``is_admin``)."""
        return self.check(PolicyRule.CONTEXT_IS_ADMIN, context, {})
