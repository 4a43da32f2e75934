"""The commands the documentation tells people to run exist.

Every Markdown page (README.md, docs/, bench/README.md) is scanned for commands in code: inline code
spans and fenced code blocks, never prose. ``make <target>`` must name a target of the Makefile;
``glimpse-server <command> [<subcommand>]`` must be accepted by the argparse parser of
``glimpse.cli.main``; ``glimpse <command words>`` must be found by the cliff command manager of the
``glimpse`` CLI. Placeholders (``<IMAGE>``, ``COMMAND``, ``...``), options and ``[optional]`` parts end
a command's words, so ``glimpse-server db purge [--age-in-days N]`` is checked as ``db purge``.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from glimpse.cli.main import build_parser
from glimpse_client.cli.app import GlimpseApp

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("make", "glimpse-server", "glimpse")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
WORD = re.compile(r"^[a-z][a-z0-9-]*$")
MAKE_RULE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*(?:[ \t]+[A-Za-z0-9][A-Za-z0-9_-]*)*)[ \t]*::?(?!=)")


@dataclass(frozen=True)
class Mention:
    """A command found in a page: the program and the words after it, up to its first option."""

    where: str
    program: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: `{' '.join((self.program, *self.words))}`"


def markdown_pages() -> list[Path]:
    pages = [REPO_ROOT / "README.md", REPO_ROOT / "bench" / "README.md", *(REPO_ROOT / "docs").rglob("*.md")]
    return sorted(pages)


def code_snippets(text: str) -> Iterator[tuple[int, str]]:
    """(line number, code) for every line of a fenced block and every inline code span."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            yield number, line
        else:
            for match in CODE_SPAN.finditer(line):
                yield number, match.group(2).strip()


def _tokens(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote: the words before it still count
        return command.split()


def mentions_in(code: str, where: str) -> Iterator[Mention]:
    """The commands of one line of code: each segment between ``&&``, ``||``, ``;`` and ``|``."""
    for segment in re.split(r"&&|\|\||;|\|", code):
        tokens = _tokens(segment)
        while tokens and (tokens[0] == "$" or ENV_ASSIGNMENT.match(tokens[0])):
            tokens.pop(0)
        if not tokens or tokens[0] not in PROGRAMS:
            continue
        program, rest = tokens[0], tokens[1:]
        if program == "make":  # variables (NAME=value) may come before or after the target
            rest = [t for t in rest if not ENV_ASSIGNMENT.match(t)]
        words: list[str] = []
        for token in rest:
            if not WORD.match(token):
                break
            words.append(token)
        yield Mention(where, program, tuple(words))


def all_mentions() -> list[Mention]:
    found: list[Mention] = []
    for page in markdown_pages():
        relative = page.relative_to(REPO_ROOT)
        for number, code in code_snippets(page.read_text(encoding="utf-8")):
            found.extend(mentions_in(code, f"{relative}:{number}"))
    return found


def makefile_targets(makefile: str) -> set[str]:
    targets: set[str] = set()
    for line in makefile.splitlines():
        match = MAKE_RULE.match(line)
        if match:
            targets.update(match.group(1).split())
    return targets


# -- what the real parsers accept --------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _positional_choices(parser: argparse.ArgumentParser) -> list[str] | None:
    for action in parser._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            return [str(choice) for choice in action.choices] if action.choices is not None else None
    return None


def server_problem(words: tuple[str, ...]) -> str | None:
    """Why ``glimpse-server <words>`` is not a command of the argparse parser, or None."""
    parser = build_parser()
    for index, word in enumerate(words):
        commands = _subcommands(parser)
        if commands:
            if word not in commands:
                return f"no command {word!r} (has {sorted(commands)})"
            parser = commands[word]
            continue
        choices = _positional_choices(parser)
        if choices is None:
            return f"{' '.join(words[:index])!r} takes no word {word!r}"
        if word not in choices:
            return f"no subcommand {word!r} (has {choices})"
        return None  # the words after the subcommand are its arguments
    return None


def client_problem(words: tuple[str, ...]) -> str | None:
    """Why ``glimpse <words>`` is not a command of the cliff command manager, or None."""
    if not words:
        return None
    try:
        GlimpseApp().command_manager.find_command(list(words))
    except ValueError as exc:
        return str(exc)
    return None


# -- the checks --------------------------------------------------------------------------------------


def test_every_make_target_the_docs_name_exists() -> None:
    targets = makefile_targets((REPO_ROOT / "Makefile").read_text(encoding="utf-8"))
    mentions = [m for m in all_mentions() if m.program == "make" and m.words]
    assert mentions, "the scan found no `make <target>` at all"
    wrong = [f"{m} (no such target)" for m in mentions if m.words[0] not in targets]
    assert wrong == [], "\n".join(wrong)


def test_every_glimpse_server_command_the_docs_name_exists() -> None:
    mentions = [m for m in all_mentions() if m.program == "glimpse-server"]
    assert any(len(m.words) >= 2 for m in mentions), "the scan found no `glimpse-server db ...` at all"
    wrong = [f"{m}: {problem}" for m in mentions if (problem := server_problem(m.words))]
    assert wrong == [], "\n".join(wrong)


def test_every_glimpse_command_the_docs_name_exists() -> None:
    mentions = [m for m in all_mentions() if m.program == "glimpse"]
    assert any(len(m.words) >= 2 for m in mentions), "the scan found no `glimpse image ...` at all"
    wrong = [f"{m}: {problem}" for m in mentions if (problem := client_problem(m.words))]
    assert wrong == [], "\n".join(wrong)


# -- the scan and the parsers themselves, on made-up text -------------------------------------------


def test_the_scan_reads_code_only() -> None:
    text = "\n".join(
        [
            "Run `make test` or `make run PORT=1`; prose may make sense of make believe.",
            "```sh",
            "$ GLIMPSE_LOG_LEVEL=DEBUG glimpse-server db upgrade --config x.conf  # make notes",
            "make lint && make typecheck | cat",
            "```",
            "`glimpse image tasks <IMAGE> --watch` and ``glimpse help COMMAND``",
        ]
    )
    found = [
        (m.program, m.words)
        for number, code in code_snippets(text)
        for m in mentions_in(code, f"page:{number}")
    ]
    assert found == [
        ("make", ("test",)),
        ("make", ("run",)),
        ("glimpse-server", ("db", "upgrade")),
        ("make", ("lint",)),
        ("make", ("typecheck",)),
        ("glimpse", ("image", "tasks")),
        ("glimpse", ("help",)),
    ]


def test_makefile_targets_are_rules_not_variables() -> None:
    makefile = "PORT ?= 1\nSHELL := /bin/bash\n.PHONY: a\na: b ## help\nb c:\n\techo x: y\n"
    assert makefile_targets(makefile) == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        (("serve",), None),
        (("db",), None),
        (("db", "purge"), None),
        (("db", "downgrade"), "no subcommand 'downgrade'"),
        (("serv",), "no command 'serv'"),
        (("worker", "start"), "takes no word 'start'"),
    ],
)
def test_server_commands_are_checked_against_the_parser(words: tuple[str, ...], problem: str | None) -> None:
    found = server_problem(words)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("words", "known"),
    [
        (("image", "list"), True),
        (("help",), True),
        (("member", "set", "id"), True),
        (("image", "lst"), False),
        (("images", "list"), False),
    ],
)
def test_client_commands_are_checked_against_cliff(words: tuple[str, ...], known: bool) -> None:
    assert (client_problem(words) is None) is known
