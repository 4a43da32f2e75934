"""The oslo.policy rule language: a parser that compiles rule strings once and an evaluator for them.

Pure: no I/O, no request types. The grammar::

    expr   := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | "(" expr ")" | check
    check  := "@"                          always
            | "!"                          never
            | "role:" value                the caller has that role (case-insensitive)
            | "rule:" name                 the named rule allows it
            | cred ":" value               a caller attribute (user_id, project_id, is_admin,
                                           system_scope, domain_id, user_domain_id,
                                           project_domain_id) equals value
            | quoted ":" value             a quoted literal ('...' or "...") equals value
    value  := text with %(target_key)s placeholders filled from the target, or a quoted constant

An empty rule always allows. A placeholder naming a missing target key, or a ``None`` on either side of a
comparison, never matches. Booleans compare as ``"True"`` / ``"False"``. A :class:`RuleSet` parses every
rule when it is built; syntax errors, invalid rule names, unknown ``rule:`` references and reference
cycles are reported then, as :class:`PolicyError`, with the rule name and a 1-based column.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from glimpse.errors import PolicyError

__all__ = ["PolicyError", "RuleSet"]


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
_CREDENTIALS: Final = (
    "user_id",
    "project_id",
    "is_admin",
    "system_scope",
    "domain_id",
    "user_domain_id",
    "project_domain_id",
)
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
# A set of rules


class RuleSet:
    """Named rules, each parsed once and checked against the others (references, cycles).

    Immutable and safe to share between threads.
    """

    __slots__ = ("_compiled", "_sources")

    def __init__(self, sources: Mapping[str, str]) -> None:
        for name in sources:
            if not _RULE_NAME.fullmatch(name):
                raise PolicyError(
                    f"Policy rule name {name!r} is not valid (letters, digits, '_', '.', ':', '-')."
                )
        compiled = {name: _compile(name, text) for name, text in sources.items()}
        _check_references(sources, compiled)
        self._sources: Mapping[str, str] = MappingProxyType(dict(sources))
        self._compiled: Mapping[str, _Node] = MappingProxyType(compiled)

    @property
    def sources(self) -> Mapping[str, str]:
        """Rule name -> rule string, as given."""
        return self._sources

    def evaluate(
        self,
        name: str,
        roles: Iterable[str],
        credentials: Mapping[str, object],
        target: Mapping[str, object],
    ) -> bool:
        """Whether rule ``name`` allows a caller with ``roles`` and ``credentials`` to act on ``target``.

        ``credentials`` holds the caller attributes a check may compare (user_id, project_id, is_admin);
        an unknown rule name is a :class:`PolicyError`.
        """
        node = self._compiled.get(name)
        if node is None:
            raise PolicyError(f"No policy rule named {name!r} exists.", rule=name)
        env = _Env(
            roles=frozenset(role.lower() for role in roles),
            creds={cred: _text(credentials.get(cred)) for cred in _CREDENTIALS},
            target=target,
            rules=self._compiled,
        )
        return node.evaluate(env)
