"""How ``glimpse`` reports errors: one line on stderr (one paragraph for a 409), and an exit code."""

from __future__ import annotations

import shutil
import textwrap
import traceback
from typing import TextIO

from glimpse_client import APIError, Conflict, GlimpseClientError, TaskTimeout, TransportError

from .conflict import conflict_paragraph
from .exitcodes import ExitCode


class CommandError(Exception):
    """Bad input found by the CLI itself (an unknown or ambiguous image name, say): exit code 1."""


class UsageError(CommandError):
    """Options that cannot go together, or a missing one: exit code 2."""


def api_error_line(error: APIError) -> str:
    """``<message> (HTTP 404, request req-…)``."""
    where = f"HTTP {error.status}"
    if error.request_id:
        where += f", request {error.request_id}"
    return f"{error.message.rstrip()} ({where})"


def _fill(text: str, stream: TextIO, prog: str) -> str:
    line = f"{prog}: {text}"
    if not stream.isatty():
        return line
    width = max(40, min(shutil.get_terminal_size().columns, 120) - 1)
    return textwrap.fill(line, width=width, break_on_hyphens=False, break_long_words=False)


def report(
    error: BaseException,
    *,
    stream: TextIO,
    prog: str = "glimpse",
    image_ref: str | None = None,
    debug: bool = False,
) -> ExitCode:
    """Write ``error`` to ``stream`` the way ``glimpse`` does and return the exit code it means."""
    if debug:
        traceback.print_exception(error, file=stream)
    if isinstance(error, Conflict):
        text = conflict_paragraph(error, image_ref=image_ref or "IMAGE")
        code = ExitCode.ERROR
    elif isinstance(error, APIError):
        text, code = api_error_line(error), ExitCode.ERROR
    elif isinstance(error, TaskTimeout):
        text, code = str(error), ExitCode.TIMEOUT
    elif isinstance(error, TransportError):
        text, code = f"cannot reach the image service: {error}", ExitCode.ERROR
    elif isinstance(error, UsageError):
        text, code = str(error), ExitCode.USAGE
    elif isinstance(error, CommandError | GlimpseClientError):
        text, code = str(error), ExitCode.ERROR
    elif isinstance(error, OSError):
        name = f" {error.filename}" if error.filename else ""
        text, code = f"{error.strerror or error}{':' if name else ''}{name}", ExitCode.ERROR
    else:
        text, code = f"{type(error).__name__}: {error}", ExitCode.ERROR
    stream.write(_fill(text, stream, prog) + "\n")
    stream.flush()
    return code
