"""What the import plugin steps share (:mod:`glimpse.jobs.decompress_step`,
:mod:`glimpse.jobs.convert_step`), and the ``no_op`` plugin; what each plugin decides is
:mod:`glimpse.domain.import_plugins`.

The plugins run on the staged data of glance-direct and web-download, in the order of
``[image_import_opts] image_import_plugins``, between the download and the copy to the stores. A
plugin never changes the data it reads: it writes a new staging object (``derived_key``), which
the next plugin and then :class:`~glimpse.jobs.import_steps.CopyToStores` read, so a task handed
back to the queue starts again from the data as it was staged. ``Complete`` removes the objects
when the image is active; a step's revert removes its own object on every path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

from glimpse.domain.import_plugins import ImportPlugin, derived_key
from glimpse.errors import FlowFailed
from glimpse.jobs.import_run import ImportRun
from glimpse.jobs.objects import delete_object
from glimpse.jobs.steps import Why

log = logging.getLogger(__name__)

#: A plugin's state in the task's progress.
RUNNING, DONE, SKIPPED, FAILED = "running", "done", "skipped", "failed"


class PluginStep:
    """What the plugin steps share: their state in the progress, their output object, the check
    of ``validation_data`` on the data as it came in, and the revert."""

    plugin: ImportPlugin
    name: str

    def _state(self, run: ImportRun, state: str) -> None:
        run.progress.plugins[self.plugin] = state

    async def _skip(self, run: ImportRun, why: str) -> None:
        log.info("task %s: %s skipped: %s", run.task.id, self.plugin, why)
        self._state(run, SKIPPED)
        await run.heartbeat.beat(force=True)

    def _output_key(self, run: ImportRun) -> str:
        return derived_key(run.image_id, run.task.id, self.plugin)

    def _adopt_output(self, run: ImportRun, location: str, size: int) -> None:
        """The step's output is now what the next steps read."""
        run.derived.append(location)
        run.size = size
        for store_id in run.targets:
            run.heartbeat.store(store_id).bytes_total = size

    def _validator(self, run: ImportRun) -> Any | None:
        """A hash of the client's ``validation_data`` algorithm, when the data must be checked here:
        the first plugin that changes the data checks it as it came in."""
        expected = run.expected_digest
        if expected is None:
            return None
        return hashlib.new(expected.algorithm)

    def _check_validation(self, run: ImportRun, digest: Any | None) -> None:
        expected = run.expected_digest
        if digest is None or expected is None:
            return
        actual = digest.hexdigest()
        if actual != expected.value:
            given = "the remote image records" if expected is run.remote_digest else "validation_data expects"
            raise FlowFailed(
                f"The staged data has {expected.algorithm} {actual}, but {given} "
                f"{expected.value}; nothing was stored. Check the digest (or the URL) and import again."
            )
        run.validated = True

    def _fail(self, run: ImportRun, message: str) -> FlowFailed:
        self._state(run, FAILED)
        return FlowFailed(f"The import plugin {self.plugin} failed: {message}")

    async def revert(self, run: ImportRun, reason: Why) -> None:
        # The output object is this task's own (its key names the task), whatever the reason.
        # It may exist without being recorded in ``run.derived`` (a check after the write failed).
        location = run.staging.location_for(self._output_key(run))
        await delete_object(run.staging, location)
        if location in run.derived:
            run.derived.remove(location)
        if run.progress.plugins.get(self.plugin) == RUNNING:
            self._state(run, FAILED)


class NoOp(PluginStep):
    """``no_op``: does nothing (Glance's example plugin); shown as done in the progress."""

    plugin = ImportPlugin.NO_OP
    name = ImportPlugin.NO_OP.value

    async def execute(self, run: ImportRun) -> None:
        self._state(run, DONE)


async def close_quietly(stream: object) -> None:
    """Close a store's read stream, if it can be closed, ignoring what closing raises."""
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()
