"""The plugin's commands: ``openstack image task list --image`` and a waiting ``openstack image import``.

Both replace an OSC command of the same name and keep its behaviour where they add nothing:
``image task list`` without ``--image`` is OSC's admin task list, and ``image import`` runs OSC's own
option checks before the import. The progress bars, live tables, 409 explanations and exit codes
come from the ``glimpse`` command line's renderers (``glimpse_client.cli``, the ``cli`` extra, on
stderr so that ``-f json`` output stays clean). Without them ``image task list --image`` says which
extra to install, and ``image import --wait`` waits with plain lines and exits 1 on any problem.
This module imports nothing of the SDK at import time, so loading it cannot break other
``openstack`` commands.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import shlex
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from openstackclient.image.v2 import image as osc_image
from openstackclient.image.v2 import task as osc_task
from osc_lib import exceptions

if TYPE_CHECKING:
    from glimpse_client import Client, Image, Task, TaskHandle

LOG = logging.getLogger(__name__)
PROG = "openstack"
CLI_EXTRA_HINT = "pip install 'glimpse-client[osc]'"


def _watch_hint(image_ref: str) -> str:
    """This front end's command that follows an image's tasks (a ``WatchHint`` of the cli renderers)."""
    return f"{PROG} image task list --image {shlex.quote(image_ref)} --watch"


@contextlib.contextmanager
def _api_errors(image_ref: str) -> Iterator[None]:
    """The SDK's errors as OSC command errors; a 409 explained the way ``glimpse`` explains it."""
    from glimpse_client import Conflict, GlimpseClientError

    try:
        yield
    except Conflict as conflict:
        try:
            from glimpse_client.cli.conflict import conflict_paragraph
        except ImportError:
            raise exceptions.CommandError(str(conflict)) from conflict
        raise exceptions.CommandError(
            conflict_paragraph(conflict, image_ref=image_ref, watch=_watch_hint)
        ) from conflict
    except GlimpseClientError as error:
        raise exceptions.CommandError(str(error)) from error


def _glimpse(app: Any) -> Client:
    """The client OSC builds with :func:`glimpse_client.osc.plugin.make_client` (``API_NAME``)."""
    client: Client = app.client_manager.glimpse
    return client


class ListImageTasks(osc_task.ListTask):
    #: What ``run`` exits with once the list is shown: with --watch, the watched tasks' outcome.
    exit_code = 0
    _description = (
        "List tasks. With --image: the tasks of one image (imports and copies, pending and "
        "processing ones included) with their progress, from GET /v2/images/{id}/tasks; --watch "
        "follows them in a live table until none is pending or processing, and exits 0 when the "
        "tasks it saw running all put the image in every target store, 4 when a store failed, 3 "
        "when a task failed. Without --image: all tasks (admin), as in python-openstackclient."
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--image", metavar="<image>", help="List the tasks of this image (name or ID)")
        parser.add_argument(
            "--watch",
            action="store_true",
            help="With --image: follow the tasks until none is pending or processing, then list them "
            "(on a terminal a live table on stderr; elsewhere a line per change)",
        )
        parser.add_argument(
            "--long", action="store_true", help="With --image: list additional fields in output"
        )
        return parser

    def run(self, parsed_args: argparse.Namespace) -> int:
        shown = super().run(parsed_args)
        return self.exit_code or shown

    def take_action(
        self, parsed_args: argparse.Namespace
    ) -> tuple[tuple[str, ...], Iterable[tuple[Any, ...]]]:
        if parsed_args.image is None:
            if parsed_args.watch or parsed_args.long:
                raise exceptions.CommandError("--watch and --long need --image")
            return super().take_action(parsed_args)
        image = self.app.client_manager.image.find_image(parsed_args.image, ignore_missing=False)
        client = _glimpse(self.app)
        try:
            from rich.console import Console

            from glimpse_client.cli.exitcodes import watched_outcome
            from glimpse_client.cli.taskview import task_rows, watch_image_tasks
        except ImportError as missing:
            raise exceptions.CommandError(
                f"Listing image tasks needs the renderers of the cli extra: {CLI_EXTRA_HINT} ({missing})"
            ) from missing
        with _api_errors(parsed_args.image):
            if parsed_args.watch:
                watched: set[str] = set()
                tasks = watch_image_tasks(
                    client,
                    image.id,
                    console=Console(stderr=True),
                    long=parsed_args.long,
                    watch=_watch_hint,
                    active=watched,
                    image_ref=parsed_args.image,
                )
                if watched:
                    self.exit_code = int(watched_outcome(tasks, watched, client.get_image(image.id)))
            else:
                tasks = client.image_tasks(image.id)
        return task_rows(tasks, parsed_args.long)


class _ImportStarter:
    """Stands in for OSC's image proxy while OSC's ``ImportImage.take_action`` runs.

    OSC checks the options and the image through the proxy, then calls ``import_image``, which
    openstacksdk sends without returning the 202's headers, where Glimpse names the task. So every
    attribute is the real proxy's except ``import_image``, which glimpse_client sends, keeping the
    task (and finding it by request id on plain Glance). glance-download, which glimpse_client does
    not send, still goes through openstacksdk.
    """

    def __init__(self, proxy: Any, client: Client) -> None:
        self._proxy = proxy
        self._client = client
        self.image_id: str | None = None
        self.handle: TaskHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proxy, name)

    def import_image(
        self,
        image: Any,
        method: str = "glance-direct",
        *,
        uri: str | None = None,
        stores: list[str] | None = None,
        all_stores: bool | None = None,
        all_stores_must_succeed: bool | None = None,
        **remote: Any,
    ) -> Any:
        self.image_id = image.id
        if method == "glance-download":
            return self._proxy.import_image(
                image,
                method=method,
                uri=uri,
                stores=stores,
                all_stores=all_stores,
                all_stores_must_succeed=all_stores_must_succeed,
                **remote,
            )
        self.handle = self._client.import_image(
            image.id,
            method,
            uri=uri,
            stores=list(stores) if stores else None,
            all_stores=bool(all_stores),
            allow_failure=all_stores_must_succeed is False,
        )
        return image


@contextlib.contextmanager
def _imports_through(manager: Any, starter: _ImportStarter) -> Iterator[None]:
    """Put ``starter`` in place of ``manager.image`` (a class-level cache, shadowed on the instance)."""
    manager.image = starter
    try:
        yield
    finally:
        del manager.image


class ImportImage(osc_image.ImportImage):
    #: What ``run`` exits with once the output is shown (0 unless ``--wait`` saw a problem).
    exit_code = 0
    _description = (
        f"{osc_image.ImportImage._description}\n"
        "With --wait, follow the import task until it ends, with progress bars on a terminal, then "
        "show the image. Exit codes: 0 every requested store holds the image, 3 the task failed, "
        "4 some requested stores failed, 5 --timeout ran out (the task goes on on the server). "
        "Against a server that names no task (plain Glance before API 2.12) it waits on the image's "
        "status and its os_glance_importing_to_stores / os_glance_failed_import properties."
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "--timeout",
            type=float,
            metavar="<seconds>",
            dest="wait_timeout",
            help="With --wait: stop waiting after this long (exit code 5; the task goes on)",
        )
        return parser

    def run(self, parsed_args: argparse.Namespace) -> int:
        shown = super().run(parsed_args)
        return self.exit_code or shown

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        if parsed_args.wait_timeout is not None and not parsed_args.wait:
            raise exceptions.CommandError("--timeout needs --wait")
        manager = self.app.client_manager
        try:
            client = _glimpse(self.app)
        except Exception as unusable:  # OSC then behaves exactly as without the plugin
            LOG.debug("glimpse client unavailable, using OSC's image import as is: %s", unusable)
            return super().take_action(parsed_args)
        starter = _ImportStarter(manager.image, client)
        with _api_errors(parsed_args.image), _imports_through(manager, starter):
            shown = super().take_action(parsed_args)
        handle = starter.handle
        if not parsed_args.wait:
            if handle is not None:
                self._say(
                    f"Import task {handle.task_id} started; follow it with: {_watch_hint(parsed_args.image)}"
                )
            return shown
        image_id = starter.image_id
        assert image_id is not None  # OSC found the image before importing
        requested = list(parsed_args.stores) if parsed_args.stores else None
        with _api_errors(parsed_args.image):
            if handle is not None:
                self.exit_code = self._follow(client, handle, parsed_args, requested)
            else:
                self.exit_code = self._wait_on_image(client, image_id, parsed_args, requested)
        info = osc_image._format_image(manager.image.get_image(image_id))
        columns, values = zip(*sorted(info.items()), strict=True)
        return columns, values

    def _say(self, line: str) -> None:
        self.app.stderr.write(f"{line}\n")

    def _follow(
        self, client: Client, handle: TaskHandle, parsed_args: argparse.Namespace, requested: list[str] | None
    ) -> int:
        from glimpse_client import TaskFailed, TaskTimeout

        try:
            task = self._show_progress(handle, parsed_args)
        except TaskTimeout:
            self._say(
                f"Still waiting for task {handle.task_id} after {parsed_args.wait_timeout:g}s; it goes "
                f"on on the server. Follow it with: {_watch_hint(parsed_args.image)}"
            )
            return _exit_code("TIMEOUT")
        except TaskFailed as failed:
            task = failed.task
        return self._task_outcome(task, client.get_image(handle.image_id), requested)

    def _show_progress(self, handle: TaskHandle, parsed_args: argparse.Namespace) -> Task:
        """``glimpse``'s progress view (bars on a terminal, lines elsewhere), or plain lines without it."""
        try:
            from rich.console import Console

            from glimpse_client.cli.progress import follow_task
        except ImportError as missing:
            LOG.debug("no progress renderer, plain lines instead: %s", missing)
            return self._wait_plain(handle, parsed_args.wait_timeout)
        return follow_task(
            handle,
            console=Console(stderr=True),
            timeout=parsed_args.wait_timeout,
            image_ref=parsed_args.image,
            watch=_watch_hint,
        )

    def _wait_plain(self, handle: TaskHandle, timeout: float | None) -> Task:
        def line(task: Task) -> None:
            self._say(f"task {task.id} {task.status}: {task.message or ''}".rstrip(": "))

        return handle.wait(math.inf if timeout is None else timeout, on_progress=line)

    def _task_outcome(self, task: Task, image: Image, requested: list[str] | None) -> int:
        try:
            from glimpse_client.cli.exitcodes import ExitCode, outcome
        except ImportError:
            return 0 if task.status == "success" else 1
        code = outcome(task, image, requested)
        if code is ExitCode.PARTIAL:  # the progress view has said why each store failed
            self._say(f"Task {task.id} succeeded, but not every requested store holds the image.")
        return int(code)

    def _wait_on_image(
        self, client: Client, image_id: str, parsed_args: argparse.Namespace, requested: list[str] | None
    ) -> int:
        """No task to follow: wait until the image shows no import under way."""
        from glimpse_client import TaskTimeout

        self._say(f"The server named no import task; waiting on image {image_id}'s status.")
        timeout = math.inf if parsed_args.wait_timeout is None else parsed_args.wait_timeout
        try:
            image = client.wait_for_import(image_id, timeout)
        except TaskTimeout:
            self._say(f"Image {image_id} is still being imported after {timeout:g}s.")
            return _exit_code("TIMEOUT")
        return _image_outcome(image, requested)


def _exit_code(name: str) -> int:
    """``glimpse``'s exit code ``name`` (OK, FAILED, PARTIAL, TIMEOUT); 1 for any problem without it."""
    try:
        from glimpse_client.cli.exitcodes import ExitCode
    except ImportError:
        return 0 if name == "OK" else 1
    return int(ExitCode[name])


def _image_outcome(image: Image, requested: list[str] | None) -> int:
    """``glimpse``'s exit code from the image alone; 1 for any problem without it."""
    try:
        from glimpse_client.cli.exitcodes import image_outcome
    except ImportError:
        return 0 if image.status == "active" and not image.failed_import else 1
    return int(image_outcome(image, requested))


__all__ = ["ImportImage", "ListImageTasks"]
