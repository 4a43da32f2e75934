"""A live ``glimpse-server serve`` process on loopback, for tests that need a real server and socket."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from secretcheck import watch_log

REPO_ROOT = Path(__file__).resolve().parents[1]


def venv_script(name: str) -> Path:
    """A console script of the environment running the tests (the project's ``.venv`` normally)."""
    beside = Path(sys.executable).with_name(name)
    return beside if beside.exists() else REPO_ROOT / ".venv" / "bin" / name


GLIMPSE_BIN = venv_script("glimpse-server")
GLIMPSE_CLI = venv_script("glimpse")


def run_cli(*args: str, env: Mapping[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the ``glimpse`` console script through pipes (no terminal), as a script would."""
    return subprocess.run(
        [str(GLIMPSE_CLI), *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: A server normally answers within two seconds; a loaded 2-core machine can take many times that.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], what: Callable[[], str], within: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail with ``what()`` (e.g. the logs) after ``within`` seconds.

    For what a process does just after the state a test watched: a runner deletes the staged data
    and logs its last line after it has recorded the task's success.
    """
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


class PortTaken(Exception):
    """Another process bound the port between :func:`free_port` and the server's start."""


@dataclass
class Server:
    """One ``glimpse-server serve`` process and where to reach it."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, environ: Mapping[str, str]) -> None:
        watch_log(self.log_path)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(GLIMPSE_BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=dict(environ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                if "address already in use" in self.log().lower():
                    raise PortTaken(self.port)
                pytest.fail(
                    f"glimpse-server serve ({self.name}) exited with code {code} before answering.\n"
                    f"--- server output ---\n{self.log()}",
                    pytrace=False,
                )
            try:
                response = httpx.get(f"{self.url}/versions", timeout=2.0)
                if response.status_code == 200:
                    return
                last_error = f"GET /versions answered {response.status_code}"
            except httpx.TransportError as exc:
                last_error = repr(exc)
            time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"glimpse-server serve ({self.name}) did not answer GET /versions within {timeout:.0f}s "
            f"({last_error}).\n--- server output ---\n{self.log()}",
            pytrace=False,
        )

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def start_server(name: str, env: Mapping[str, str], log_dir: Path, attempts: int = 3) -> Server:
    """A ``glimpse-server serve`` named ``name``, once it answers; a port another process took
    between :func:`free_port` and the start is replaced by a fresh one."""
    for attempt in range(attempts):
        live = Server(name=name, port=free_port(), log_path=log_dir / f"{name}-{attempt}.log")
        live.start(env)
        try:
            live.wait_ready()
        except PortTaken:
            continue
        return live
    pytest.fail(f"glimpse-server serve ({name}) found its port taken {attempts} times", pytrace=False)
