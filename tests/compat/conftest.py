"""Fixtures for the compatibility layer: the real clients drive a live ``glimpse-server serve`` on loopback.

One :class:`Deployment` per test session (so one per pytest-xdist worker, each on its own free
ports and temporary data directory): one SQLite database and data directory served by up to three
``glimpse-server serve`` processes, one per no-auth default identity, so that a client which cannot send
identity headers (the ``glance`` CLI) can still act as the owner, as another project or as an
admin by picking the server it talks to. The owner server starts with the first test that needs
it; the others start when a test first asks for them. Tests share the deployment, so each one
works on images it created itself (unique names, tags or properties), never on "all images".

Fixtures:

* ``deployment`` (session): the running :class:`Deployment`.
* ``owner`` / ``peer`` / ``admin`` (session): its :class:`Server` for that identity.
* ``identity`` (session): identity name (``owner``, ``peer``, ``admin``) -> the headers that act
  as it on any of the servers, and its ``project`` id under ``identity[name]["X-Project-Id"]``.
* ``api`` (session): an ``httpx.Client`` on the owner server for checking server-side state; pass
  ``headers=identity["peer"]`` (or ``["admin"]``) to a call to act as another identity.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from livesupport import PortTaken, Server, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def venv_script(name: str) -> Path:
    """A console script of the environment running the tests (the project's ``.venv`` normally)."""
    beside = Path(sys.executable).with_name(name)
    return beside if beside.exists() else REPO_ROOT / ".venv" / "bin" / name


STORE_DESCRIPTIONS = {"fast": "fast-local-disk", "cheap": "cheap-bulk-disk"}

#: Identity name -> the no-auth headers acting as it; each server's default identity is one of these.
IDENTITY_HEADERS: dict[str, dict[str, str]] = {
    "owner": {"X-Project-Id": "compat-owner", "X-User-Id": "owner-user", "X-Roles": "member,reader"},
    "peer": {"X-Project-Id": "compat-peer", "X-User-Id": "peer-user", "X-Roles": "member,reader"},
    "admin": {"X-Project-Id": "compat-admin", "X-User-Id": "admin-user", "X-Roles": "admin,member,reader"},
}


@dataclass
class Deployment:
    """Servers sharing one data directory and one SQLite database, one per default identity.

    The owner server starts first and brings the schema to head; the others start on first use.
    """

    root: Path
    servers: dict[str, Server] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def environ(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OS_"))}
        headers = IDENTITY_HEADERS[name]
        env.update(
            {
                "GLIMPSE_DATA_DIR": str(self.data_dir),
                "GLIMPSE_DATABASE__CONNECTION": f"sqlite:///{self.data_dir / 'glimpse.sqlite'}",
                "GLIMPSE_LOG_LEVEL": "WARNING",
                "GLIMPSE_ENABLED_BACKENDS": ",".join(f"{store}:file" for store in STORE_DESCRIPTIONS),
                **{
                    f"GLIMPSE_{store.upper()}__STORE_DESCRIPTION": description
                    for store, description in STORE_DESCRIPTIONS.items()
                },
                "GLIMPSE_AUTH__NOAUTH_DEFAULT_PROJECT": headers["X-Project-Id"],
                "GLIMPSE_AUTH__NOAUTH_DEFAULT_USER": headers["X-User-Id"],
                "GLIMPSE_AUTH__NOAUTH_DEFAULT_ROLES": headers["X-Roles"],
                # web-download tests fetch from an HTTP server the test runs on loopback, on a free
                # port: allow private addresses and any port but 22 (the cloud metadata service
                # stays refused whatever the options say).
                "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOW_PRIVATE_NETWORKS": "true",
                "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS": "",
                "GLIMPSE_IMPORT_FILTERING_OPTS__DISALLOWED_PORTS": "22",
            }
        )
        return env

    def server(self, name: str) -> Server:
        """The server acting as identity ``name``, started (and waited for) on first use."""
        server = self.servers.get(name)
        if server is None:
            if name != "owner":
                self.server("owner")  # the owner server migrates the database; never race it
            for attempt in range(3):
                server = Server(name=name, port=free_port(), log_path=self.root / f"{name}-{attempt}.log")
                self.servers[name] = server
                server.start(self.environ(name))
                try:
                    server.wait_ready()
                    break
                except PortTaken:
                    continue
            else:
                pytest.fail(f"glimpse-server serve ({name}) found its port taken three times", pytrace=False)
        return server

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


_RUNNING: list[Deployment] = []


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    running = Deployment(root=tmp_path_factory.mktemp("glimpse-live"))
    _RUNNING.append(running)
    try:
        running.server("owner")
        yield running
    finally:
        running.stop()
        _RUNNING.remove(running)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failed live test shows what the servers logged (warnings and tracebacks) beside it."""
    report = yield
    if report.failed:
        for running in _RUNNING:
            for server in running.servers.values():
                logged = server.log().strip()
                if logged:
                    report.sections.append((f"glimpse-server serve ({server.name}) log", logged[-20_000:]))
    return report


@pytest.fixture(scope="session")
def owner(deployment: Deployment) -> Server:
    return deployment.server("owner")


@pytest.fixture(scope="session")
def peer(deployment: Deployment) -> Server:
    return deployment.server("peer")


@pytest.fixture(scope="session")
def admin(deployment: Deployment) -> Server:
    return deployment.server("admin")


@pytest.fixture(scope="session")
def identity() -> dict[str, dict[str, str]]:
    return {name: dict(headers) for name, headers in IDENTITY_HEADERS.items()}


@pytest.fixture(scope="session")
def api(owner: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=owner.url, headers=IDENTITY_HEADERS["owner"], timeout=30.0) as client:
        yield client
