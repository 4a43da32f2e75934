"""What every store driver shares: the rule for object keys and the checks a write starts with.

The driver interface itself, ``ImageStore``, is a port (:mod:`glimpse.ports`), so that the services
and the task runner can use stores without importing any driver.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["KEY_PATTERN", "MAX_KEY_LENGTH", "check_write_arguments", "validate_key"]

MAX_KEY_LENGTH: Final = 200
KEY_PATTERN: Final = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_KEY_LENGTH - 1}}}")


def validate_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is usable as an object name in every store.

    A key is one path segment of 1 to 200 letters, digits, ``.``, ``_`` or ``-`` that starts with a
    letter or digit: it cannot escape a directory, cannot collide with a hidden temporary file and
    needs no quoting inside a location.
    """
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise ValueError(
            f"Store key {key!r} is not valid: use 1-{MAX_KEY_LENGTH} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )


def check_write_arguments(key: str, max_size: int | None) -> None:
    """The argument checks every driver's ``write`` starts with (raises ``ValueError``)."""
    validate_key(key)
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be 0 or more, got {max_size}.")
