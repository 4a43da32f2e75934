"""The ``property_protection_file``, read once at start-up into :class:`PropertyProtections`.

The file is Glance's: an INI file, one section per regular expression of property names, each with
``create``, ``read``, ``update`` and ``delete`` (see :mod:`glimpse.domain.property_protections`).
Every error is a :class:`ConfigError` whose message starts with the file's path, so that
``glimpse-server serve`` refuses to start with it.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from glimpse.domain.property_protections import PropertyProtections, RuleFormat
from glimpse.errors import ConfigError

__all__ = ["load_protections"]


def load_protections(
    path: str | os.PathLike[str] | None, rule_format: RuleFormat | str
) -> PropertyProtections:
    """The protections of the file at ``path``; when no file is named, protections that allow all."""
    if path is None:
        return PropertyProtections.none()
    file = Path(path)
    # No interpolation: '%' is an ordinary character of a regular expression or a role.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"property_protection_file {file}: cannot be read ({exc}).") from exc
    try:
        parser.read_string(text, source=str(file))
    except configparser.Error as exc:
        raise ConfigError(f"property_protection_file {file}: {_reason(exc)}") from exc
    sections = [(name, dict(parser.items(name))) for name in parser.sections()]
    try:
        return PropertyProtections.from_sections(sections, rule_format)
    except ConfigError as exc:
        raise ConfigError(f"property_protection_file {file}: {exc.message}") from exc


def _reason(exc: configparser.Error) -> str:
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"section [{exc.section}] appears twice (line {exc.lineno}); merge the two."
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"[{exc.section}] sets '{exc.option}' twice (line {exc.lineno}); keep one."
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno} comes before any [section]; start with a [<regular expression>] line."
    return " ".join(str(exc).split())
