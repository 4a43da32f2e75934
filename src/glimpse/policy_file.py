"""The ``[oslo_policy] policy_file``, read once at start-up into the overrides of a :class:`Policy`.

The file is an oslo-style mapping of rule name to rule string. Files ending in ``.json`` are read as
JSON, anything else as YAML (which also reads JSON). An empty file changes nothing. Every error is a
:class:`PolicyError` whose message starts with the file's path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from glimpse.domain.policy import Policy
from glimpse.domain.property_protections import PropertyProtections
from glimpse.errors import PolicyError

__all__ = ["load_policy", "read_overrides"]


def load_policy(
    path: str | os.PathLike[str] | None,
    *,
    enforce_scope: bool = True,
    protections: PropertyProtections | None = None,
) -> Policy:
    """The policy in force: the defaults, plus the rules of the file at ``path`` when one is named,
    with the property ``protections`` (whose policy rules it must define)."""
    if path is None:
        return Policy(enforce_scope=enforce_scope, protections=protections)
    file = Path(path)
    overrides = read_overrides(file)
    try:
        return Policy(overrides, enforce_scope=enforce_scope, protections=protections)
    except PolicyError as exc:
        raise PolicyError(f"Policy file {file}: {exc.message}", rule=exc.rule, column=exc.column) from exc


def read_overrides(path: Path) -> dict[str, str]:
    """The rules written in the file at ``path``: rule name -> rule string, not parsed yet."""
    data = _parse(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyError(
            f"Policy file {path}: expected a mapping of rule name to rule string,"
            f" found {type(data).__name__}."
        )
    overrides: dict[str, str] = {}
    for name, text in data.items():
        if not isinstance(name, str):
            raise PolicyError(
                f"Policy file {path}: Policy rule name {name!r} is not valid (write it as text)."
            )
        if not isinstance(text, str):
            found = "nothing" if text is None else type(text).__name__
            raise PolicyError(
                f"Policy file {path}: Policy rule {name!r}: the value must be a rule string, found {found}"
                ' (in YAML, quote it: "!", "@", "" for always).',
                rule=name,
            )
        overrides[name] = text
    return overrides


def _parse(path: Path) -> object:
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
