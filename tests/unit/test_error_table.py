"""The one error tree and the one status table agree: every ``GlimpseError`` anywhere in the package
is drawn in ``glimpse.errors``' docstring, under its real parent, with the status the table gives it."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import glimpse
from glimpse import errors
from glimpse.api.errors import STATUS_TABLE, status_for

_LINE = re.compile(r"^(?P<indent>[\s│├└─]*)(?P<name>[A-Z]\w+)\s.*\((?P<status>\d{3})\)\s*$")


def _drawn() -> dict[str, tuple[str | None, int]]:
    """Each class drawn in the docstring: its parent in the drawing and its status."""
    tree: dict[str, tuple[str | None, int]] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        tree[match["name"]] = (stack[-1][1] if stack else None, int(match["status"]))
        stack.append((depth, match["name"]))
    return tree


def _all_error_classes() -> dict[str, type[errors.GlimpseError]]:
    for module in pkgutil.walk_packages(glimpse.__path__, "glimpse."):
        if ".migrations." not in module.name:
            importlib.import_module(module.name)
    found: dict[str, type[errors.GlimpseError]] = {}
    pending: list[type[errors.GlimpseError]] = [errors.GlimpseError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def test_the_docstring_draws_every_error_class_once() -> None:
    drawn = _drawn()
    classes = _all_error_classes()
    assert sorted(drawn) == sorted(classes)
    assert all(cls.__module__ == "glimpse.errors" for cls in classes.values())


@pytest.mark.parametrize("name", sorted(_drawn()))
def test_each_class_has_its_drawn_parent_and_status(name: str) -> None:
    parent, status = _drawn()[name]
    cls = getattr(errors, name)
    if parent is None:
        assert cls is errors.GlimpseError
    else:
        assert cls.__bases__ == (getattr(errors, parent),)
    instance = cls.__new__(cls)  # the status depends on the class only, not on the arguments
    assert status_for(instance) == status


def test_the_table_lists_subclasses_before_their_parents() -> None:
    classes = [cls for cls, _ in STATUS_TABLE]
    for position, cls in enumerate(classes):
        for later in classes[position + 1 :]:
            assert not issubclass(later, cls), f"{later.__name__} is shadowed by {cls.__name__}"


def test_anything_else_is_a_500() -> None:
    assert status_for(ValueError("boom")) == 500
    assert status_for(errors.GlimpseError()) == 500
