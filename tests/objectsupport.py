"""The object store test server: Swift with its S3 API on loopback (``scripts/s3-server.sh``).

``start_s3_server()`` starts it once per machine (every xdist worker calls it; a file lock makes
the first one start it and the others read its settings) and returns how to reach it. It is left
running between pytest runs; ``make test`` and ``make services-stop`` stop it.

:class:`KeystoneSwift` is a second Swift proxy in front of the same account, container and object
servers, validating Keystone tokens as a cloud's Swift does (keystonemiddleware's ``authtoken``, then
Swift's own ``keystoneauth``), with the Keystone it needs (``keystonesupport.KeystoneServer``) set up
with a ``swift`` service user, an ``object-store`` service in the catalog and a ``glance`` user in the
``service`` project. One per test session (``swift_keystone`` fixture); it stops with the session,
and ``scripts/s3-server.sh stop`` stops one a killed run left behind.
"""

from __future__ import annotations

import functools
import getpass
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx
import keystoneauth1.identity.v3
import keystoneauth1.session
import pytest
import swiftclient.client
from filelock import FileLock

from keystonesupport import REGION, KeystoneServer
from livesupport import free_port
from secretcheck import register_secret

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = REPO_ROOT / ".test-services"
S3_SCRIPT = REPO_ROOT / "scripts" / "s3-server.sh"
S3_START_TIMEOUT = 600  # seconds; the first start installs Swift (and memcached with apt-get)
S3_HELPER = REPO_ROOT / "scripts" / "s3_server_helper.py"
PROXY_START_TIMEOUT = 60.0
#: Seconds the Keystone-validating proxy believes a validated token without asking Keystone again.
PROXY_TOKEN_CACHE_TIME = 2


@dataclass(frozen=True)
class ObjectServer:
    """How to reach the object store test server: S3 (path-style) and Swift (tempauth) on one port."""

    s3_endpoint_url: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str
    swift_auth_url: str
    swift_user: str
    swift_key: str
    swift_dir: str  # swift.conf and the rings, for a second proxy on the same servers
    swift_memcache: str
    swift_python: str  # the Swift virtualenv's interpreter


def start_s3_server() -> ObjectServer:
    SERVICES_DIR.mkdir(exist_ok=True)
    with FileLock(str(SERVICES_DIR / "s3-server.lock"), timeout=S3_START_TIMEOUT + 60):
        try:
            proc = subprocess.run(
                ["bash", str(S3_SCRIPT), "start"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=S3_START_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not run `scripts/s3-server.sh start`: {exc}", pytrace=False)
    values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    for name in ("S3_SECRET_KEY", "SWIFT_KEY"):
        if name in values:
            register_secret(values[name], f"the object store test server's {name}")
    try:
        return ObjectServer(
            s3_endpoint_url=values["S3_ENDPOINT_URL"],
            s3_access_key=values["S3_ACCESS_KEY"],
            s3_secret_key=values["S3_SECRET_KEY"],
            s3_region=values["S3_REGION"],
            swift_auth_url=values["SWIFT_AUTH_URL"],
            swift_user=values["SWIFT_USER"],
            swift_key=values["SWIFT_KEY"],
            swift_dir=values["SWIFT_DIR"],
            swift_memcache=values["SWIFT_MEMCACHE"],
            swift_python=values["SWIFT_PYTHON"],
        )
    except KeyError:
        pytest.fail(
            f"`scripts/s3-server.sh start` failed with exit code {proc.returncode}; the tests marked "
            "`objects` need this server.\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )


SWIFT_SERVICE_PASSWORD = "swift-service-pw"
GLANCE_PASSWORD = "glance-pw"
register_secret(SWIFT_SERVICE_PASSWORD, "the Keystone password of the Swift proxy")
register_secret(GLANCE_PASSWORD, "the Keystone password of the glance service user")


def _proxy_config(server: ObjectServer, keystone: KeystoneServer, port: int) -> str:
    """The proxy's configuration, written by the helper that writes the tempauth proxy's of
    scripts/s3-server.sh (the same pipeline but for authtoken and keystoneauth)."""
    options = {
        "keystone_url": keystone.url,
        "password": SWIFT_SERVICE_PASSWORD,
        "token_cache_time": str(PROXY_TOKEN_CACHE_TIME),
    }
    done = subprocess.run(
        [server.swift_python, "-I", "-W", "ignore", str(S3_HELPER), "proxy-config", "keystone"]
        + [server.swift_dir, str(port), server.swift_memcache, getpass.getuser()]
        + [f"{name}={value}" for name, value in options.items()],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not write the Keystone Swift proxy's configuration:\n{done.stderr}")
    return done.stdout


class KeystoneSwift:
    """A Keystone and a Swift proxy that validates its tokens, on the object servers of ``server``.

    ``auth_url`` (Keystone v3), ``user`` (``service:glance``, Glance's spelling) and ``key`` are
    what a store is configured with; ``project_id`` names the Swift account ``AUTH_<project_id>``.
    """

    def __init__(self, server: ObjectServer, keystone: KeystoneServer, root: Path) -> None:
        self.keystone = keystone
        self.auth_url = f"{keystone.url}/v3"
        self.region = REGION
        keystone.member_of("service", "swift", SWIFT_SERVICE_PASSWORD, ["admin"])
        glance = keystone.member_of("service", "glance", GLANCE_PASSWORD, ["member"])
        self.user = f"{glance.project_name}:{glance.user_name}"
        self.key = GLANCE_PASSWORD
        self.project_id = glance.project_id
        self.port = free_port()
        self.proxy_url = f"http://127.0.0.1:{self.port}"
        template = f"{self.proxy_url}/v1/AUTH_%(project_id)s"
        keystone.service(
            "object-store",
            "swift",
            {(interface, REGION): template for interface in ("public", "internal", "admin")},
        )
        root.mkdir(parents=True, exist_ok=True)
        conf = root / "proxy-keystone.conf"
        conf.write_text(_proxy_config(server, keystone, self.port))
        self.log_path = root / "proxy-keystone.log"
        # Tagged and recorded like the servers of scripts/s3-server.sh, whose stop ends it if this
        # session cannot.
        state = Path(server.swift_dir).parent
        self._pid_file = state / "run" / f"keystone-proxy-{self.port}.pid"
        args = (str(conf), "proxy-server")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [server.swift_python, "-I", "-W", "ignore", str(S3_HELPER), "serve", server.swift_dir, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "GLIMPSE_S3_SERVER_DIR": str(state)},
            )
        self._pid_file.write_text(f"{self._process.pid}\n")
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def session(self, password: str | None = None) -> keystoneauth1.session.Session:
        """A keystoneauth session of the ``glance`` user on the ``service`` project."""
        project, _, user = self.user.partition(":")
        plugin = keystoneauth1.identity.v3.Password(
            auth_url=self.auth_url,
            username=user,
            password=password or self.key,
            project_name=project,
            user_domain_id="default",
            project_domain_id="default",
        )
        return keystoneauth1.session.Session(auth=plugin, timeout=30)

    def connection(self) -> swiftclient.client.Connection:
        """A swiftclient connection to the ``glance`` user's account, for looking behind a store; all
        share one session, so that they need one token (each new token costs Keystone a validation)."""
        return swiftclient.client.Connection(
            session=self._shared_session, os_options={"region_name": self.region}, retries=1
        )

    @functools.cached_property
    def _shared_session(self) -> keystoneauth1.session.Session:
        return self.session()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + PROXY_START_TIMEOUT
        last: object = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the Keystone Swift proxy exited ({self._process.returncode}):\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.proxy_url}/healthcheck", timeout=2.0).status_code == 200:
                    # A token of the glance user lets it into its account: authtoken and keystoneauth work.
                    self.connection().head_account()
                    return
            except Exception as exc:  # not up yet; the last one is reported
                last = exc
            time.sleep(0.2)
        raise RuntimeError(
            f"the Keystone Swift proxy was not ready after {PROXY_START_TIMEOUT}s: {last}\n{self.log()}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def close(self) -> None:
        process = self._process
        if process.poll() is None:
            # The proxy leads its own process group, which holds its forked worker.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self._pid_file.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
