"""What every ``glimpse`` command shares: error handling, the client, image lookup, column types."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from cliff.columns import FormattableColumn
from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from glimpse_client import Client, Image, NotFound, Task

from ._text import progress_line
from .errors import CommandError, UsageError, report
from .exitcodes import ExitCode
from .progress import say

if TYPE_CHECKING:
    from rich.console import Console

    from .app import GlimpseApp

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE)
#: How many same-named images an ambiguity message lists.
_AMBIGUOUS_SHOWN = 5


def looks_like_id(ref: str) -> bool:
    return _UUID.match(ref) is not None


def find_image(client: Client, ref: str) -> Image:
    """The image whose id, or else whose (unique) name, is ``ref``."""
    if looks_like_id(ref):
        try:
            return client.get_image(ref)
        except NotFound:
            pass
    matches = list(islice(client.list_images(name=ref), _AMBIGUOUS_SHOWN + 1))
    if not matches:
        raise CommandError(f"no image with the name or ID '{ref}' exists")
    if len(matches) > 1:
        shown = ", ".join(m.id for m in matches[:_AMBIGUOUS_SHOWN])
        more = " and more" if len(matches) > _AMBIGUOUS_SHOWN else ""
        raise CommandError(f"more than one image is named '{ref}' ({shown}{more}); use its ID")
    return matches[0]


def key_value(text: str) -> tuple[str, str]:
    """``k=v`` from the command line."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def store_list(text: str) -> list[str]:
    stores = [s.strip() for s in text.split(",") if s.strip()]
    if not stores:
        raise argparse.ArgumentTypeError("expected a comma-separated list of store ids")
    return stores


class ListColumn(FormattableColumn[list[Any]]):
    """A list: ``a, b`` in tables, a JSON list in ``-f json``."""

    def human_readable(self) -> str:
        return ", ".join(str(v) for v in self._value or [])


class DictColumn(FormattableColumn[dict[str, Any]]):
    """A mapping: ``k='v', …`` in tables, a JSON object in ``-f json``."""

    def human_readable(self) -> str:
        return ", ".join(f"{k}='{v}'" for k, v in sorted((self._value or {}).items()))


class ProgressColumn(FormattableColumn[Task]):
    """A task's progress: one line per store in tables, the server's object in ``-f json``."""

    def human_readable(self) -> str:
        return progress_line(self._value)

    def machine_readable(self) -> Any:
        return self._value.progress


def image_fields(image: Image) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """``image show``'s rows, sorted by name as ``openstack image show`` sorts them."""
    data: dict[str, Any] = {
        "checksum": image.checksum,
        "container_format": image.container_format,
        "created_at": image.created_at,
        "disk_format": image.disk_format,
        "file": image.file,
        "id": image.id,
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "name": image.name,
        "os_hash_algo": image.os_hash_algo,
        "os_hash_value": image.os_hash_value,
        "os_hidden": image.os_hidden,
        "owner": image.owner,
        "properties": DictColumn(image.properties),
        "protected": image.protected,
        "size": image.size,
        "status": image.status,
        "stores": ListColumn(image.stores),
        "tags": ListColumn(image.tags),
        "updated_at": image.updated_at,
        "virtual_size": image.virtual_size,
        "visibility": image.visibility,
    }
    keys = tuple(sorted(data))
    return keys, tuple(data[k] for k in keys)


def run_guarded(command: Command, call: Callable[[], int]) -> int:
    app: GlimpseApp = command.app  # type: ignore[assignment]
    try:
        code = call()
    except KeyboardInterrupt:
        raise
    except Exception as error:  # every error ends as one line and an exit code, never a traceback
        return int(report(error, stream=app.stderr, prog=app.PROG, image_ref=app.image_ref, debug=app.debug))
    return int(getattr(command, "exit_code", 0)) or code


class _Shared:
    """Shortcuts for the commands below (mixed in first, so ``self.app`` is cliff's)."""

    app: Any
    exit_code: ExitCode = ExitCode.OK

    @property
    def glimpse(self) -> GlimpseApp:
        app: GlimpseApp = self.app
        return app

    @property
    def client(self) -> Client:
        return self.glimpse.client

    @property
    def console(self) -> Console:
        """Where progress, hints and live views go (stderr)."""
        return self.glimpse.console

    def image(self, ref: str) -> Image:
        """Look the image up and remember how the user named it, for the hints of error messages."""
        self.glimpse.image_ref = ref
        return find_image(self.client, ref)

    def say(self, text: str) -> None:
        """A note for the user on stderr (never mixed into the command's output)."""
        say(self.console, text)


class GlimpseCommand(_Shared, Command):
    """A command without tabular output."""

    def run(self, parsed_args: argparse.Namespace) -> int:
        return run_guarded(self, lambda: Command.run(self, parsed_args))


class GlimpseLister(_Shared, Lister):
    """A command that prints a table (``-f json|yaml|value|csv|table``)."""

    def run(self, parsed_args: argparse.Namespace) -> int:
        return run_guarded(self, lambda: Lister.run(self, parsed_args))


class GlimpseShowOne(_Shared, ShowOne):
    """A command that prints one object's fields."""

    def run(self, parsed_args: argparse.Namespace) -> int:
        return run_guarded(self, lambda: ShowOne.run(self, parsed_args))


def check_exclusive(parsed: argparse.Namespace, *names: str) -> None:
    given = [
        n for n in names if getattr(parsed, n.lstrip("-").replace("-", "_"), None) not in (None, False, [])
    ]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} cannot be used together")


def rows(items: Iterable[Any], getters: Sequence[Callable[[Any], Any]]) -> list[tuple[Any, ...]]:
    return [tuple(get(item) for get in getters) for item in items]
