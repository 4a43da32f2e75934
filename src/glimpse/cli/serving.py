"""How ``glimpse-server serve`` runs uvicorn, in one process or as a supervisor of ``--workers N``.

Both stop the same way: the first SIGTERM or SIGINT drains (the listener closes, requests in flight
get ``shutdown_grace_period`` seconds, the task runner hands its tasks back); a second one during
the drain stops at once, cutting off what is in flight and leaving it to the housekeeping.

uvicorn itself takes a second signal only as a SIGINT to the process that serves, and its supervisor
of worker processes takes none at all while it waits for them. Here, :class:`ImpatientServer` takes
a second SIGTERM too, and :class:`Supervisor` passes a second signal on to its worker processes as
SIGINT (again every second until they are gone, so that a worker that had not yet taken the first
signal takes the next one as the second). Everything here is module level: the worker processes are
started by ``spawn`` and unpickle the configuration's class and the supervisor's targets by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

log = logging.getLogger("glimpse")

#: The exit status of a server that could not start (uvicorn's).
STARTUP_FAILURE = 3
#: Seconds between two looks at the worker processes (and at new signals) while they stop.
STOP_POLL = 0.2
#: Seconds between two SIGINTs to worker processes told to stop at once that are still there.
HURRY_AGAIN = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stopped(signum: int, frame: object) -> None:
    """uvicorn raises the signal that stopped it again once it has drained; this handler takes it, so
    that a clean stop ends the process normally (exit 0) instead of by the signal."""
    log.info("stopped by signal %d", signum)


def take_stop_signals() -> None:
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stopped)


class ImpatientServer(uvicorn.Server):
    """uvicorn's server, but a second SIGTERM during the grace period stops at once too (uvicorn
    only takes a second SIGINT so): what is in flight is cut off and left to the housekeeping."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.should_exit and sig in STOP_SIGNALS and not self.force_exit:
            log.warning(
                "signal %d again: stopping now; uploads in flight are cut off and running tasks' "
                "leases will lapse",
                sig,
            )
            self._captured_signals.append(sig)
            self.force_exit = True
            return
        super().handle_exit(sig, frame)


class WorkerConfig(uvicorn.Config):
    """uvicorn's configuration; a worker process that unpickles it also ends normally once its
    server has stopped (uvicorn prepares each worker's logging first: the hook used here)."""

    def configure_logging(self) -> None:
        super().configure_logging()
        take_stop_signals()


class Supervisor(Multiprocess):
    """uvicorn's supervisor of the worker processes, which also takes a second SIGTERM or SIGINT
    while the workers drain: it sends them SIGINT, their own signal to stop at once."""

    def __init__(self, config: uvicorn.Config, sockets: list[Any]) -> None:
        super().__init__(config, sockets)
        self.hurry: int | None = None

    def handle_term(self) -> None:
        self._stop(signal.SIGTERM)

    def handle_int(self) -> None:
        self._stop(signal.SIGINT)

    def _stop(self, sig: int) -> None:
        if not self.should_exit.is_set():
            log.info("signal %d: the worker processes drain; a second signal stops them at once", sig)
            self.should_exit.set()
        elif self.hurry is None:
            log.warning(
                "signal %d again: stopping now; the worker processes cut off the uploads in flight and "
                "their running tasks' leases will lapse",
                sig,
            )
            self.hurry = sig

    def join_all(self) -> None:
        """Wait for the worker processes to end, taking a second signal meanwhile."""
        hurried_at: float | None = None
        while any(process.process.is_alive() for process in self.processes):
            for sig in [s for s in self.signal_queue if s in STOP_SIGNALS]:
                self.signal_queue.remove(sig)
                self._stop(sig)
            if self.hurry is not None and (
                hurried_at is None or time.monotonic() - hurried_at >= HURRY_AGAIN
            ):
                hurried_at = time.monotonic()
                for process in self.processes:
                    if process.process.is_alive() and process.pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(process.pid, signal.SIGINT)
            for process in self.processes:
                if process.process.is_alive():
                    process.process.join(STOP_POLL)
                    break


def run(app: str, options: dict[str, Any]) -> int:
    """Serve ``app`` with uvicorn ``options`` until stopped; the exit status."""
    take_stop_signals()
    if options.get("workers", 1) > 1:
        config = WorkerConfig(app, **options)
        sock = config.bind_socket()
        try:
            Supervisor(config, sockets=[sock]).run()
        finally:
            sock.close()
        return 0
    server = ImpatientServer(uvicorn.Config(app, **options))
    server.run()
    return 0 if server.started else STARTUP_FAILURE
