"""The ``image_conversion`` import plugin as a step (see :mod:`glimpse.jobs.plugin_steps`).

It runs ``qemu-img convert -p -f <inspected format> -O <output_format>`` from the staged file to a
scratch file in the staging directory, with asyncio's subprocesses; its percent output is the
task's progress; it is killed when the task stops. The converted data is inspected again, against
the new ``disk_format``, by the copy to the stores.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from typing import Any

from glimpse.domain.import_plugins import (
    QEMU_IMG,
    ConversionPlan,
    ImportPlugin,
    plan_conversion,
    qemu_percent,
)
from glimpse.domain.inspection import ContentVerdict, content_judge
from glimpse.errors import DatabaseUnavailable, FormatMismatch, StorageError, StoreNotFound, UnsafeImage
from glimpse.jobs.import_run import PHASE_CONVERTING, ImportRun
from glimpse.jobs.plugin_steps import DONE, RUNNING, PluginStep, close_quietly
from glimpse.ports import LocalFiles, StoredObject
from glimpse.streaming import ContentInspector, rebuffer

log = logging.getLogger(__name__)

#: How much of qemu-img's error output a task message quotes (its last characters).
STDERR_QUOTED = 600


class Convert(PluginStep):
    """``image_conversion``: the staged data converted to ``[image_conversion] output_format``."""

    plugin = ImportPlugin.IMAGE_CONVERSION
    name = ImportPlugin.IMAGE_CONVERSION.value

    async def execute(self, run: ImportRun) -> None:
        staging = run.staging
        output_format = run.ports.settings.conversion_output_format
        if not isinstance(staging, LocalFiles):
            raise self._fail(
                run,
                "qemu-img needs the staged data as a local file, and the staging area is not on a "
                "local filesystem; set node_staging_uri to a file:// directory.",
            )
        source = run.staged_source
        digest = self._validator(run)
        try:
            verdict = await self._inspect(run, source, digest)
        except StoreNotFound:
            raise self._fail(run, f"the staging area holds no data for image {run.image_id}.") from None
        except (FormatMismatch, UnsafeImage) as exc:
            raise self._fail(run, f"the data was refused, so it was not converted: {exc.message}") from None
        self._check_validation(run, digest)
        try:
            plan = plan_conversion(verdict.detected, output_format)
        except ValueError:
            raise self._fail(
                run,
                f"the data is {verdict.detected}, which cannot be converted to {output_format}; "
                f"upload {output_format} data.",
            ) from None
        if plan is None:
            # Nothing to convert: the disk_format stays as the image declares it (an ``ami`` image
            # whose data is raw stays ``ami``).
            await self._skip(run, f"the data already is {verdict.detected}")
            return
        limit = await run.data_limit()
        if output_format == "raw" and verdict.virtual_size and verdict.virtual_size > limit:
            raise self._fail(run, self._too_large(verdict.virtual_size, limit))
        self._state(run, RUNNING)
        hb = run.heartbeat
        hb.start_phase(PHASE_CONVERTING)
        hb.progress.percent = 0.0
        await hb.beat(force=True)
        key = self._output_key(run)
        scratch = staging.scratch_path(key)

        async def convert() -> StoredObject:
            await self._convert(run, plan, staging.local_path(source), scratch)
            size = await asyncio.to_thread(os.path.getsize, scratch)
            if size > limit:
                raise self._fail(run, self._too_large(size, limit))
            return await staging.adopt(scratch, key)

        try:
            stored = await hb.guard(convert())
        except StorageError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise self._fail(run, f"the staging area failed: {exc.message}") from None
        finally:
            await asyncio.to_thread(_remove, scratch)
        self._adopt_output(run, stored.location, stored.size)
        run.disk_format = output_format
        hb.progress.percent = 100.0
        hb.progress.processed_bytes = stored.size
        self._state(run, DONE)
        log.info(
            "task %s: image %s converted from %s to %s (%d bytes)",
            run.task.id,
            run.image_id,
            verdict.detected,
            output_format,
            stored.size,
        )
        await hb.beat(force=True)

    @staticmethod
    def _too_large(size: int, limit: int) -> str:
        return (
            f"the converted image would have {size} bytes, more than the {limit} this image may have "
            "(image_size_cap, or what the owner's storage quota leaves); nothing was kept. Import "
            "a smaller image, or ask an operator to raise the limit."
        )

    @staticmethod
    async def _inspect(run: ImportRun, location: str, digest: Any | None) -> ContentVerdict:
        """Inspect the staged data against the image's disk_format (reading it all when the
        client's digest must be checked too)."""
        inspector = ContentInspector(content_judge(run.disk_format, run.ports.settings.content_rules))
        size = (await run.staging.stat(location)).size
        stream = await run.staging.open(location)
        try:
            async for block in rebuffer(stream):
                if inspector.needs_data:
                    await asyncio.to_thread(inspector.feed, block)
                    inspector.check_early()
                if digest is not None:
                    await asyncio.to_thread(digest.update, block)
                elif not inspector.needs_data:
                    break
        finally:
            await close_quietly(stream)
        verdict = inspector.finish(size)
        assert isinstance(verdict, ContentVerdict)
        return verdict

    async def _convert(self, run: ImportRun, plan: ConversionPlan, source: str, target: str) -> None:
        """Run qemu-img; its ``-p`` percentages become the progress. Killed if the task stops."""
        hb = run.heartbeat
        command = [QEMU_IMG, "convert", "-p", "-f", plan.source, "-O", plan.output]
        if run.ports.settings.conversion_rate_limit:
            command += ["-r", str(run.ports.settings.conversion_rate_limit)]
        command += [source, target]
        log.info("task %s: %s", run.task.id, " ".join(command))
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "LC_ALL": "C"},
            )
        except OSError as exc:
            raise self._fail(run, f"{QEMU_IMG} could not be started ({exc.strerror or exc}).") from None
        errors: collections.deque[bytes] = collections.deque(maxlen=64)

        async def read_errors() -> None:
            assert process.stderr is not None
            async for line in process.stderr:
                errors.append(line)

        error_reader = asyncio.create_task(read_errors())
        try:
            assert process.stdout is not None
            while chunk := await process.stdout.read(4096):
                percent = qemu_percent(chunk.decode("ascii", "replace"))
                if percent is not None and percent != hb.progress.percent:
                    hb.progress.percent = percent
                    await hb.beat()
            status = await process.wait()
            await error_reader
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            error_reader.cancel()
            await asyncio.gather(error_reader, return_exceptions=True)
        if status != 0:
            said = b"".join(errors).decode("utf-8", "replace").strip().replace(source, "<staged data>")
            said = said.replace(target, "<output>")
            if len(said) > STDERR_QUOTED:
                said = "…" + said[-STDERR_QUOTED:]
            raise self._fail(
                run,
                f"qemu-img convert from {plan.source} to {plan.output} exited with status {status}: "
                f"{said or 'no message'}. The data may be damaged; check it with 'qemu-img check' and "
                "upload it again.",
            )


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
