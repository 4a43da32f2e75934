"""HAProxy in front of several ``glimpse-server serve`` nodes, for the multi-node topology tests.

``Balancer`` writes a configuration (round-robin, ``/healthcheck`` as the health check, timeouts
that let long uploads, downloads and event streams through) and runs ``scripts/haproxy.sh run`` on
it in the foreground, as the current user, on loopback. Every answer carries ``X-Glimpse-Node``, the
name of the node that served it, so a test can see where each request went. docs/deployment.md
shows the same configuration for production.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from filelock import FileLock

from livesupport import REPO_ROOT, free_port

SCRIPT = REPO_ROOT / "scripts" / "haproxy.sh"
SERVICES_DIR = REPO_ROOT / ".test-services"
INSTALL_TIMEOUT = 600
NODE_HEADER = "x-glimpse-node"

CONFIG = """\
global
    maxconn 2000

defaults
    mode http
    log stderr format raw local0 info
    option httplog
    option redispatch
    retries 2
    timeout connect 2s
    timeout http-request 30s
    timeout client 15m
    timeout server 15m
    timeout http-keep-alive 10s
    timeout check {check_timeout}

frontend glimpse
    bind 127.0.0.1:{port}
    default_backend glimpse_api

backend glimpse_api
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthcheck
    http-check expect status 200
    default-server inter {interval} fall {fall} rise {rise}
    http-response set-header X-Glimpse-Node %[srv_name]
{servers}
"""


def ensure_haproxy() -> None:
    """Install Debian's haproxy when missing (once per machine, under a file lock)."""
    SERVICES_DIR.mkdir(exist_ok=True)
    with FileLock(str(SERVICES_DIR / "haproxy-install.lock"), timeout=INSTALL_TIMEOUT + 60):
        proc = subprocess.run(
            ["bash", str(SCRIPT), "install"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    if proc.returncode != 0:
        pytest.fail(
            f"`scripts/haproxy.sh install` failed ({proc.returncode}); the topology tests need HAProxy.\n"
            f"{proc.stdout}{proc.stderr}",
            pytrace=False,
        )


@dataclass
class Balancer:
    """One HAProxy process balancing ``nodes`` (name → port on 127.0.0.1)."""

    nodes: Mapping[str, int]
    workdir: Path
    port: int = field(default_factory=free_port)
    interval: str = "500ms"
    fall: int = 2
    rise: int = 1
    check_timeout: str = "3s"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"haproxy-{self.port}.cfg"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"haproxy-{self.port}.log"

    def config(self) -> str:
        servers = "\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in self.nodes.items())
        return CONFIG.format(
            port=self.port,
            servers=servers,
            interval=self.interval,
            fall=self.fall,
            rise=self.rise,
            check_timeout=self.check_timeout,
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        ensure_haproxy()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", str(SCRIPT), "run", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_serving(self, timeout: float = 30.0) -> None:
        """Until every node has answered through the balancer (all of them passed a health check)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"haproxy exited with code {self.process.returncode}:\n{self.log()}", pytrace=False
                )
            try:
                answer = httpx.get(f"{self.url}/versions", timeout=2.0)
                if answer.status_code == 200:
                    seen.add(answer.headers.get(NODE_HEADER, ""))
            except httpx.TransportError:
                pass
            if seen >= set(self.nodes):
                return
            time.sleep(0.05)
        pytest.fail(
            f"haproxy did not reach every node within {timeout:.0f}s (reached {sorted(seen)}):\n{self.log()}",
            pytrace=False,
        )

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
