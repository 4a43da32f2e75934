"""``glimpse``: run the API service and manage its database."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, cast

from glimpse.api.auth import build_authenticator
from glimpse.config import Settings, load_settings
from glimpse.db import migrate
from glimpse.db.session import make_engine
from glimpse.errors import ConfigError, PolicyError
from glimpse.logs import configure_logging
from glimpse.runtime import Runtime, freeze_startup_heap, keep_freed_memory
from glimpse.telemetry import prepare_directory

log = logging.getLogger("glimpse")


def prepare(settings: Settings) -> None:
    """Create the data folder and bring the database schema to head (idempotent). Store directories,
    staging's included, are made by their stores on the first write."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_connection)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def _settings(args: argparse.Namespace) -> Settings:
    environ = dict(os.environ)
    if args.config:
        environ["GLIMPSE_CONFIG_FILE"] = str(Path(args.config).resolve())
    for option in ("host", "port", "workers"):
        value = getattr(args, option, None)
        if value is not None:
            environ[
                {"host": "GLIMPSE_BIND_HOST", "port": "GLIMPSE_BIND_PORT", "workers": "GLIMPSE_WORKERS"}[
                    option
                ]
            ] = str(value)
    # Worker processes started by uvicorn rebuild the settings from this environment.
    os.environ.update(environ)
    return load_settings(environ=environ)


#: Seconds a server worker process may take to answer uvicorn's health ping (uvicorn's default, 5 s,
#: is shorter than a worker's start-up on a loaded machine, which then kills it over and over).
WORKER_HEALTHCHECK_TIMEOUT = 60


def _prepare_metrics(settings: Settings) -> None:
    """Every process of this node (the server's workers, ``glimpse-server worker``) counts into
    the same directory, so one scrape of ``/metrics`` sees them all."""
    prepare_directory(settings.metrics_directory)


def cmd_serve(args: argparse.Namespace) -> int:
    import functools

    from glimpse.api.http_protocol import BufferedHttpConnection
    from glimpse.cli import serving

    settings = _settings(args)
    configure_logging(settings.log_level, settings.use_json)
    _prepare_metrics(settings)
    prepare(settings)
    # Build everything a worker process builds, once, so a bad store or policy file stops us here
    # with a clear message instead of crash-looping the worker processes.
    Runtime.build(settings).close()
    build_authenticator(settings)
    log.info(
        "serving on http://%s:%d with %d worker(s), database %s",
        settings.bind_host,
        settings.bind_port,
        settings.workers,
        settings.database_connection.split("@")[-1],
    )
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.bind_host,
        "port": settings.bind_port,
        "workers": settings.workers,
        "loop": "uvloop",
        # A module-level class with its limits bound: picklable for the worker processes.
        "http": cast(Any, functools.partial(BufferedHttpConnection, limits=settings.http_limits)),
        "access_log": False,
        # uvicorn's own lines go through the root logger, in the service's format (text or JSON).
        "log_config": None,
        "log_level": settings.log_level.lower(),
        # SIGTERM: stop accepting, let the requests in flight finish for this long, then stop the
        # task runner (it hands its tasks back). A second SIGTERM or SIGINT stops at once (in every
        # worker process too: glimpse.cli.serving).
        "timeout_graceful_shutdown": settings.shutdown_grace_period,
        # With --workers N, uvicorn kills a worker that does not answer its health ping within this
        # time, and a new worker answers only once its imports are done: seconds on a busy machine.
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_TIMEOUT,
    }
    return serving.run("glimpse.api.asgi:app", options)


def cmd_worker(args: argparse.Namespace) -> int:
    import asyncio

    from glimpse.jobs.runner import run_worker

    settings = _settings(args)
    configure_logging(settings.log_level, settings.use_json)
    _prepare_metrics(settings)
    prepare(settings)
    keep_freed_memory()
    runtime = Runtime.build(settings)
    freeze_startup_heap()
    try:
        asyncio.run(run_worker(runtime))
    finally:
        runtime.close()
    return 0


def cmd_scrubber(args: argparse.Namespace) -> int:
    """Remove the data of pending_delete images (``delayed_delete``), or restore one of them."""
    import asyncio

    from glimpse.errors import GlimpseError
    from glimpse.jobs.scrubber import restore, scrub

    settings = _settings(args)
    configure_logging(settings.log_level, settings.use_json)
    runtime = Runtime.build(settings)
    try:
        if args.restore:
            try:
                asyncio.run(restore(runtime, args.restore))
            except GlimpseError as exc:
                print(f"glimpse-server scrubber: {exc.message}", file=sys.stderr)
                return 1
            print(f"image {args.restore} restored to active")
            return 0
        if args.once:
            report = asyncio.run(scrub(runtime))
            _print_scrub(report.scrubbed, report.retry)
            return 1 if report.retry else 0
        return asyncio.run(_scrub_forever(runtime))
    finally:
        runtime.close()


def _print_scrub(scrubbed: list[str], retry: dict[str, list[str]]) -> None:
    for image_id in scrubbed:
        print(f"image {image_id}: data removed, image deleted")
    for image_id, stores in retry.items():
        print(
            f"image {image_id}: data left in store(s) {', '.join(stores)}; the next pass tries again",
            file=sys.stderr,
        )


async def _scrub_forever(runtime: Runtime) -> int:
    import asyncio

    from glimpse.jobs.scrubber import scrub

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop_signal, stop.set)
    log.info("scrubber: a pass every %d s (wakeup_time)", runtime.settings.wakeup_time)
    while not stop.is_set():
        try:
            report = await scrub(runtime)
            if report.scrubbed or report.retry:
                log.info(
                    "scrubber: %d image(s) deleted, %d left for the next pass",
                    len(report.scrubbed),
                    len(report.retry),
                )
        except Exception:
            log.exception("scrubber: the pass failed; the next one tries again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), runtime.settings.wakeup_time)
    log.info("scrubber: stopped")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level, settings.use_json)
    if args.db_command == "purge":
        return _purge(settings, args.age_in_days)
    if args.db_command == "load-metadefs":
        return _load_metadefs(settings, Path(args.path) if args.path else STANDARD_METADEFS, args.overwrite)
    if args.db_command == "export-metadefs":
        return _export_metadefs(settings, Path(args.path or "metadefs"))
    if args.db_command == "upgrade":
        prepare(settings)
        print(f"database is at revision {migrate.head_revision()}")
        return 0
    engine = make_engine(settings.database_connection)
    try:
        problems = migrate.check(engine)
    finally:
        engine.dispose()
    for problem in problems:
        print(f"db check: {problem}", file=sys.stderr)
    if not problems:
        print(f"database is at revision {migrate.head_revision()} and matches the models")
    return 1 if problems else 0


def _purge(settings: Settings, age_in_days: int) -> int:
    import asyncio

    from glimpse.jobs.housekeeping import purge_history, purge_tasks

    if age_in_days < 0:
        print("glimpse-server db purge: --age-in-days must be 0 or more", file=sys.stderr)
        return 2
    runtime = Runtime.build(settings)
    try:
        purged = asyncio.run(purge_tasks(runtime, age_in_days))
        entries = asyncio.run(purge_history(runtime))
    finally:
        runtime.close()
    print(f"purged {purged} task(s) that expired more than {age_in_days} day(s) ago")
    print(f"purged {entries} image history entries older than {settings.image_history_days} day(s)")
    return 0


#: The metadata definitions shipped with Glimpse (one JSON file per namespace, Glance's format).
STANDARD_METADEFS = Path(__file__).resolve().parents[1] / "data" / "metadefs"


def _load_metadefs(settings: Settings, directory: Path, overwrite: bool) -> int:
    """Load every ``*.json`` file of ``directory``, one namespace each, each in its own transaction."""
    import asyncio
    import json

    from glimpse.errors import GlimpseError
    from glimpse.ports import Repositories
    from glimpse.services.metadefs import MetadefService

    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if not files:
        print(f"glimpse-server db load-metadefs: no *.json files in {directory}", file=sys.stderr)
        return 2
    prepare(settings)
    runtime = Runtime.build(settings)
    counts = {"created": 0, "replaced": 0, "skipped": 0, "failed": 0}
    try:
        for path in files:
            try:
                document = json.loads(path.read_text(encoding="utf-8"))

                def load(repos: Repositories, document: object = document) -> str:
                    return MetadefService(repos, runtime.policy).load_document(document, overwrite=overwrite)

                outcome = asyncio.run(runtime.run(load))
            except (OSError, ValueError, GlimpseError) as exc:
                message = exc.message if isinstance(exc, GlimpseError) else str(exc)
                print(f"{path.name}: not loaded: {message}", file=sys.stderr)
                counts["failed"] += 1
                continue
            counts[outcome] += 1
            print(f"{path.name}: {outcome}")
    finally:
        runtime.close()
    print(", ".join(f"{n} {what}" for what, n in counts.items()) + f" (from {directory})")
    if counts["skipped"]:
        print("namespaces that already exist were kept; --overwrite replaces them")
    return 1 if counts["failed"] else 0


def _file_name(namespace: str, taken: set[str]) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in namespace.replace("::", "-")).strip(".")
    name, n = f"{stem or 'namespace'}.json", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.json"
    taken.add(name.lower())
    return name


def _export_metadefs(settings: Settings, directory: Path) -> int:
    """Write every namespace to ``directory``, one JSON file each (the files load-metadefs reads)."""
    import asyncio
    import json

    from glimpse.errors import GlimpseError
    from glimpse.services.metadefs import MetadefService

    runtime = Runtime.build(settings)
    try:
        views = asyncio.run(
            runtime.run(lambda repos: MetadefService(repos, runtime.policy).export_all(), readonly=True)
        )
    except GlimpseError as exc:
        print(
            f"glimpse-server db export-metadefs: {exc.message} (is the database migrated? "
            "`glimpse-server db check` says)",
            file=sys.stderr,
        )
        return 1
    finally:
        runtime.close()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        for view in views:
            path = directory / _file_name(view.namespace.namespace, taken)
            path.write_text(
                json.dumps(view.document(), indent=4, ensure_ascii=False) + "\n", encoding="utf-8"
            )
    except OSError as exc:
        print(f"glimpse-server db export-metadefs: cannot write to {directory}: {exc}", file=sys.stderr)
        return 1
    print(f"exported {len(views)} namespace(s) to {directory}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glimpse-server", description="Glimpse image service.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Image API v2 service")
    serve.add_argument("--host", help="address to bind (overrides bind_host)")
    serve.add_argument("--port", type=int, help="port to bind (overrides bind_port)")
    serve.add_argument("--workers", type=int, help="number of API processes (overrides workers)")
    serve.add_argument("--config", help="INI configuration file (Glance layout)")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run task runners (imports and copies) without the API")
    worker.add_argument("--config", help="INI configuration file (Glance layout)")
    worker.set_defaults(func=cmd_worker)
    scrubber = sub.add_parser(
        "scrubber",
        help="remove the data of pending_delete images (delayed_delete) after scrub_time, "
        "every wakeup_time seconds",
    )
    scrubber.add_argument("--once", action="store_true", help="one pass, then exit (1: data was left)")
    scrubber.add_argument(
        "--daemon", action="store_true", help="run a pass every wakeup_time seconds (the default)"
    )
    scrubber.add_argument(
        "--restore", metavar="IMAGE_ID", help="put a pending_delete image back to active, then exit"
    )
    scrubber.add_argument("--config", help="INI configuration file (Glance layout)")
    scrubber.set_defaults(func=cmd_scrubber)
    db = sub.add_parser("db", help="database schema management")
    db.add_argument(
        "db_command",
        choices=["upgrade", "check", "purge", "load-metadefs", "export-metadefs"],
        help="upgrade: migrate to the latest schema; check: verify schema is current; "
        "purge: delete tasks that expired more than --age-in-days days ago and image history "
        "entries older than image_history_days days; "
        "load-metadefs: load metadata definitions (one JSON file per namespace) from PATH, by default "
        "the standard ones shipped with Glimpse; export-metadefs: write every namespace to PATH "
        "(default ./metadefs)",
    )
    db.add_argument("path", nargs="?", help="load-metadefs / export-metadefs: the directory of JSON files")
    db.add_argument(
        "--overwrite",
        action="store_true",
        help="load-metadefs: replace namespaces that already exist (by default they are kept)",
    )
    db.add_argument(
        "--age-in-days",
        "--age_in_days",
        dest="age_in_days",
        type=int,
        default=0,
        help="purge: only tasks that expired more than this many days ago (default 0: every expired task)",
    )
    db.add_argument("--config", help="INI configuration file (Glance layout)")
    db.set_defaults(func=cmd_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except (ConfigError, PolicyError) as exc:
        print(f"glimpse: configuration error: {exc.message}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
