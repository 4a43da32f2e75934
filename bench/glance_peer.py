"""The Glance peer: the real OpenStack Glance (from PyPI) under uWSGI on loopback, for side-by-side runs.

``install`` makes a virtual environment under ``--peer-dir`` (``~/.cache/glimpse-bench/glance`` by
default) and installs ``glance==33.0.0`` and ``uwsgi`` into it from PyPI; nothing of Glance is in
this repository. ``GlancePeer`` then runs one Glance API in a data directory of its own: SQLite, the
five file stores of the benchmark (fast, cheap, slow, reliable, common), uWSGI with 2 processes in
HTTP mode, and a small paste filter that gives every request the identity keystonemiddleware would
give a confirmed admin token (admin in one project), since the benchmark sends no token.

As a command: ``.venv/bin/python bench/glance_peer.py install|start`` (``start`` keeps the
server in the foreground until interrupted; it prints its URL).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service import HOST, ManagedProcess, ServerFailed

GLANCE_VERSION = "33.0.0"
STORES = ("fast", "cheap", "slow", "reliable", "common")
PROJECT_ID = "b3c1a0d2e4f64a8b9c0d1e2f3a4b5c6d"
USER_ID = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"
FILTER_MODULE = "bench_identity_filter"

# The identity filter: what keystonemiddleware's auth_token sets for a confirmed token, fixed. It is
# written into the data directory and put on uWSGI's python path; it is not imported here.
_FILTER_SOURCE = '''"""Fixed identity for a Glance without Keystone (benchmark only, loopback only)."""


def filter_factory(global_conf, **local_conf):
    fixed = {
        "HTTP_X_IDENTITY_STATUS": "Confirmed",
        "HTTP_X_PROJECT_ID": local_conf["project_id"],
        "HTTP_X_TENANT_ID": local_conf["project_id"],
        "HTTP_X_USER_ID": local_conf["user_id"],
        "HTTP_X_ROLES": local_conf["roles"],
        "HTTP_X_PROJECT_DOMAIN_ID": "default",
        "HTTP_X_USER_DOMAIN_ID": "default",
    }

    def wrap(app):
        def call(environ, start_response):
            environ.update(fixed)
            return app(environ, start_response)

        return call

    return wrap
'''


def default_peer_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "glimpse-bench" / "glance"


def log(message: str) -> None:
    print(f"[glance-peer {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def venv_bin(peer_dir: Path, name: str) -> Path:
    return peer_dir / "venv" / "bin" / name


def installed_version(peer_dir: Path) -> str | None:
    python = venv_bin(peer_dir, "python")
    if not python.exists() or not venv_bin(peer_dir, "uwsgi").exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('glance'))"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def install(peer_dir: Path, python: str | None = None) -> None:
    """Create the venv and install Glance and uWSGI from PyPI (skipped when already there)."""
    if installed_version(peer_dir) == GLANCE_VERSION:
        log(f"glance {GLANCE_VERSION} already installed in {peer_dir / 'venv'}")
        return
    peer_dir.mkdir(parents=True, exist_ok=True)
    base = python or shutil.which("python3") or sys.executable
    if not venv_bin(peer_dir, "python").exists():
        log(f"creating {peer_dir / 'venv'} with {base}")
        subprocess.run([base, "-m", "venv", str(peer_dir / "venv")], check=True)
    log(f"pip install glance=={GLANCE_VERSION} uwsgi (a few minutes the first time)")
    subprocess.run(
        [str(venv_bin(peer_dir, "pip")), "install", "-q", f"glance=={GLANCE_VERSION}", "uwsgi"], check=True
    )
    version = installed_version(peer_dir)
    if version != GLANCE_VERSION:
        raise ServerFailed(f"glance {GLANCE_VERSION} is not importable in {peer_dir / 'venv'} ({version})")


def _paste_ini(shipped: str) -> str:
    """The paste ini shipped in Glance's wheel plus one pipeline with the fixed identity filter."""
    lines = shipped.splitlines()
    out = []
    added = False
    for line in lines:
        out.append(line)
        if line.startswith("keystone = ") and "authtoken context" in line:
            out.append("benchidentity = " + line.split(" = ", 1)[1].replace("authtoken", "benchidentity"))
            added = True
    if not added:
        raise ServerFailed("the shipped glance-api-paste.ini has no 'keystone = ... authtoken context' line")
    out += [
        "",
        "[composite:glance-api-benchidentity]",
        "paste.composite_factory = glance.api:root_app_factory",
        "/: api",
        "/healthcheck: healthcheck",
        "",
        "[filter:benchidentity]",
        f"paste.filter_factory = {FILTER_MODULE}:filter_factory",
        f"project_id = {PROJECT_ID}",
        f"user_id = {USER_ID}",
        "roles = admin,member,reader",
        "",
    ]
    return "\n".join(out)


class GlancePeer(ManagedProcess):
    """One Glance API under uWSGI in ``data_dir``; the same surface as ``service.Server``."""

    name = "glance"
    label = "glance"
    #: SIGTERM reaches the uWSGI master (die-on-term), which stops its workers first.
    stop_timeout = 30.0

    def __init__(self, peer_dir: Path, data_dir: Path, workers: int = 2) -> None:
        super().__init__(data_dir / "glance-api.log")
        self.peer_dir = peer_dir
        self.data_dir = data_dir
        self.workers = workers
        self.etc = data_dir / "etc"
        self.sqlite_path = data_dir / "glance.sqlite"

    def configure(self) -> None:
        shipped = self.peer_dir / "venv" / "etc" / "glance" / "glance-api-paste.ini"
        if not shipped.exists():
            raise ServerFailed(f"{shipped} is missing: run `bench/glance_peer.py install` first")
        self.etc.mkdir(parents=True, exist_ok=True)
        for store in (*STORES, "staging", "tasks"):
            (self.data_dir / store).mkdir(parents=True, exist_ok=True)
        (self.etc / "glance-api-paste.ini").write_text(_paste_ini(shipped.read_text()))
        (self.etc / f"{FILTER_MODULE}.py").write_text(_FILTER_SOURCE)
        conf = [
            "[DEFAULT]",
            "debug = false",
            "use_stderr = true",
            "enabled_backends = " + ", ".join(f"{s}:file" for s in STORES),
            "enabled_import_methods = [glance-direct,web-download,copy-image]",
            f"worker_self_reference_url = {self.url}",
            "",
            "[database]",
            f"connection = sqlite:///{self.sqlite_path}",
            "",
            "[glance_store]",
            "default_backend = fast",
            "",
            "[os_glance_staging_store]",
            f"filesystem_store_datadir = {self.data_dir / 'staging'}/",
            "",
            "[os_glance_tasks_store]",
            f"filesystem_store_datadir = {self.data_dir / 'tasks'}/",
            "",
            "[paste_deploy]",
            "flavor = benchidentity",
            f"config_file = {self.etc / 'glance-api-paste.ini'}",
            "",
            "[wsgi]",
            f"python_interpreter = {venv_bin(self.peer_dir, 'python')}",
            "",
            "[oslo_policy]",
            "enforce_new_defaults = true",
            "enforce_scope = true",
        ]
        for store in STORES:
            conf += ["", f"[{store}]", f"filesystem_store_datadir = {self.data_dir / store}/"]
        (self.etc / "glance-api.conf").write_text("\n".join(conf) + "\n")
        # HTTP mode with the settings of Glance's uWSGI deployment guide, and a chunked-input
        # limit above the 1 MiB chunks clients send.
        uwsgi = [
            "[uwsgi]",
            f"http-socket = {HOST}:{self.port}",
            f"processes = {self.workers}",
            "master = true",
            "lazy-apps = true",
            "enable-threads = true",
            "thunder-lock = true",
            "die-on-term = true",
            "exit-on-reload = true",
            "socket-timeout = 10",
            "buffer-size = 65535",
            "http-auto-chunked = true",
            "http-chunked-input = true",
            "http-raw-body = true",
            "chunked-input-limit = 16777216",
            "add-header = Connection: close",
            "module = glance.wsgi.api:application",
            f"virtualenv = {self.peer_dir / 'venv'}",
            f"pythonpath = {self.etc}",
            f"env = OS_GLANCE_CONFIG_DIR={self.etc}",
        ]
        (self.etc / "glance-api-uwsgi.ini").write_text("\n".join(uwsgi) + "\n")
        done = subprocess.run(
            [
                str(venv_bin(self.peer_dir, "glance-manage")),
                "--config-file",
                str(self.etc / "glance-api.conf"),
                "db_sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if done.returncode != 0:
            raise ServerFailed(f"glance-manage db_sync failed:\n{done.stderr[-3000:]}")

    def start(self, timeout: float = 120.0) -> None:
        self.configure()
        self._launch([str(venv_bin(self.peer_dir, "uwsgi")), "--ini", str(self.etc / "glance-api-uwsgi.ini")])
        self._wait_until_up(timeout, poll=0.2, probe_timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glance_peer.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("install", "start"))
    parser.add_argument("--peer-dir", type=Path, default=default_peer_dir())
    parser.add_argument("--data-dir", type=Path, default=None, help="for start (default: <peer-dir>/run)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "install":
        install(args.peer_dir)
        return 0
    data_dir = args.data_dir or args.peer_dir / "run"
    shutil.rmtree(data_dir, ignore_errors=True)
    peer = GlancePeer(args.peer_dir, data_dir, args.workers)
    try:
        peer.start()
        print(
            f"glance {GLANCE_VERSION} on {peer.url} (uWSGI master pid {peer.pid}); Ctrl-C stops it",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        peer.stop()


if __name__ == "__main__":
    sys.exit(main())
