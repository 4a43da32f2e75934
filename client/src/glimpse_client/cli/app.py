"""The ``glimpse`` cliff application: global options, the command table, the client's lifetime."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from cliff.app import App
from cliff.command import Command
from cliff.commandmanager import CommandManager, EntryPointWrapper
from rich.console import Console

from glimpse_client import Client

from . import connection
from .errors import report
from .exitcodes import ExitCode

#: Every command, registered here rather than found through entry points, so that starting
#: ``glimpse`` scans nothing and imports only the module of the command it runs.
COMMANDS: dict[str, str] = {
    "image create": "images_import:CreateImage",
    "image list": "images:ListImages",
    "image show": "images:ShowImage",
    "image set": "images:SetImage",
    "image delete": "images:DeleteImage",
    "image upload": "images_data:UploadImage",
    "image download": "images_data:DownloadImage",
    "image stage": "images_data:StageImage",
    "image import": "images_import:ImportImage",
    "image copy": "images_import:CopyImage",
    "image deactivate": "images:DeactivateImage",
    "image reactivate": "images:ReactivateImage",
    "image tasks": "tasks:ListImageTasks",
    "image history": "history:ImageHistory",
    "image cancel-import": "tasks:CancelImport",
    "task show": "tasks:ShowTask",
    "task cancel": "tasks:CancelTask",
    "stores list": "discovery:ListStores",
    "import info": "discovery:ShowImportInfo",
    "member create": "members:CreateMember",
    "member list": "members:ListMembers",
    "member set": "members:SetMember",
    "member delete": "members:DeleteMember",
}


class _LazyCommand(EntryPointWrapper):
    """A registered command whose module is imported only when the command is looked up."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target

    def load(self) -> type[Command]:
        module_name, _, class_name = self.target.partition(":")
        module = importlib.import_module(f"{__package__}.{module_name}")
        command: type[Command] = getattr(module, class_name)
        return command

    @property
    def value(self) -> str:
        return f"{__package__}.{self.target}"


def _version() -> str:
    try:
        return version("glimpse-client")
    except PackageNotFoundError:
        return "unknown"


def interactive_streams() -> bool:
    """Bars and live tables only when both stdout and stderr are terminals (and TERM is not dumb)."""
    if os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


class GlimpseApp(App):
    PROG = "glimpse"
    NAME = "glimpse"

    def __init__(self) -> None:
        manager = CommandManager(None)
        for name, target in COMMANDS.items():
            manager.commands[name] = _LazyCommand(name, target)
        super().__init__(
            description="Command line for Glimpse and other OpenStack Image API v2 services.",
            version=_version(),
            command_manager=manager,
        )
        self.image_ref: str | None = None
        self._client: Client | None = None
        self._console: Console | None = None
        self._out_console: Console | None = None
        self._command_options: list[str] = []

    def build_option_parser(
        self, description: str | None, version: str | None, argparse_kwargs: dict[str, Any] | None = None
    ) -> argparse.ArgumentParser:
        parser = super().build_option_parser(description, version, argparse_kwargs)
        connection.add_arguments(parser)
        return parser

    @property
    def debug(self) -> bool:
        options = getattr(self, "options", None)
        return bool(getattr(options, "debug", False))

    # Global options are read only before the command words, so that a command may have options of
    # the same name: `glimpse --timeout 10 image import X --wait --timeout 600`.
    def _command_start(self, argv: list[str]) -> int:
        takes_value = {
            option for action in self.parser._actions if action.nargs != 0 for option in action.option_strings
        }
        index = 0
        while index < len(argv):
            arg = argv[index]
            if not arg.startswith("-") or arg == "-":
                return index
            if arg == "--":
                return index + 1
            index += 2 if arg in takes_value else 1
        return index

    def run(self, argv: list[str]) -> int:
        start = self._command_start(argv)
        rest = argv[start:]
        cut = next((i for i, arg in enumerate(rest) if arg.startswith("-")), len(rest))
        self._command_options = rest[cut:]
        if not rest:
            self.parser.parse_known_args(argv)  # --help and --version act and exit here
            self.stderr.write(f"{self.PROG}: no command given; see '{self.PROG} --help'\n")
            return int(ExitCode.USAGE)
        return super().run(argv[:start] + rest[:cut])

    def run_subcommand(self, argv: list[str]) -> int:
        return super().run_subcommand(argv + self._command_options)

    def configure_logging(self) -> None:
        super().configure_logging()
        level = logging.DEBUG if self.options.debug or self.options.verbose_level > 2 else logging.WARNING
        for name in ("httpx", "httpcore", "stevedore"):
            logging.getLogger(name).setLevel(level)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(connection.config_from_options(self.options))
        return self._client

    @property
    def console(self) -> Console:
        """stderr: progress bars, live views, hints."""
        if self._console is None:
            self._console = Console(file=self.stderr, force_terminal=interactive_streams(), highlight=False)
        return self._console

    @property
    def out_console(self) -> Console:
        """stdout: for commands whose output is a live view (``image tasks --watch``)."""
        if self._out_console is None:
            self._out_console = Console(
                file=self.stdout, force_terminal=interactive_streams(), highlight=False
            )
        return self._out_console

    def clean_up(self, cmd: Command, result: int, err: BaseException | None) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def run(argv: list[str]) -> int:
    app = GlimpseApp()
    try:
        return app.run(argv)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except Exception as error:  # raised before a command ran (bad global options...)
        return int(report(error, stream=sys.stderr, prog=GlimpseApp.PROG, debug=app.debug))
