"""Start and stop one ``glimpse-server serve`` on loopback, in a data directory of its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import rawhttp

HOST = "127.0.0.1"


class ServerFailed(Exception):
    """The service did not start, died, or answered in a way that makes the run meaningless."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def glimpse_command() -> list[str]:
    """The ``glimpse`` console script next to this interpreter, else the module."""
    script = shutil.which("glimpse-server", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-m", "glimpse.cli.main"]


class ManagedProcess:
    """A service this bench starts on loopback in its own process group, logging to a file:
    what Glimpse's ``Server`` and the Glance peer have in common."""

    #: How messages name the service ("the server", "glance").
    label = "the server"
    #: Seconds ``stop`` waits after SIGTERM before SIGKILL.
    stop_timeout = 20.0

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerFailed(f"{self.label} is not running")
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _launch(self, command: list[str], env: dict[str, str] | None = None) -> None:
        # The log goes to a file: a pipe nobody reads would block the service once it fills up.
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_until_up(self, timeout: float, poll: float, probe_timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if rawhttp.request(HOST, self.port, "GET", "/versions", timeout=probe_timeout).status == 200:
                    return
            except OSError:
                pass
            time.sleep(poll)
        raise ServerFailed(
            f"{self.label} did not answer GET /versions within {timeout:.0f} s\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServerFailed(
                f"{self.label} exited with status {self.process.returncode}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        name = self.label.removeprefix("the ")
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no {name} log)"
        return f"--- {name} log (last lines) ---\n" + "\n".join(text[-lines:])

    def count_log_lines(self, needle: str) -> int:
        try:
            with self.log_path.open(errors="replace") as log:
                return sum(1 for line in log if needle in line)
        except OSError:
            return 0

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL to the service's own process group; returns its exit status."""
        process, self.process = self.process, None
        status = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    # The group is the one start_new_session gave this service: only its processes.
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
            status = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return status


class Server(ManagedProcess):
    """``glimpse-server serve`` in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        workers: int | None,
        log_level: str | None,
        environ: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir / "server.log")
        self.data_dir = data_dir
        self.environ = dict(environ or {})
        self.workers = workers
        self.log_level = log_level

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        env["GLIMPSE_DATA_DIR"] = str(self.data_dir)
        env.update(self.environ)
        if self.log_level:
            env["GLIMPSE_LOG_LEVEL"] = self.log_level
        command = [*glimpse_command(), "serve", "--host", HOST, "--port", str(self.port)]
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        self._launch(command, env)
        self._wait_until_up(timeout, poll=0.1, probe_timeout=2)
