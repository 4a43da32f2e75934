"""The object store test server: Swift with its S3 API on loopback (``scripts/s3-server.sh``).

``start_s3_server()`` starts it once per machine (every xdist worker calls it; a file lock makes
the first one start it and the others read its settings) and returns how to reach it. It is left
running between pytest runs; ``make test`` and ``make services-stop`` stop it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = REPO_ROOT / ".test-services"
S3_SCRIPT = REPO_ROOT / "scripts" / "s3-server.sh"
S3_START_TIMEOUT = 600  # seconds; the first start installs Swift (and memcached with apt-get)


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
    try:
        return ObjectServer(
            s3_endpoint_url=values["S3_ENDPOINT_URL"],
            s3_access_key=values["S3_ACCESS_KEY"],
            s3_secret_key=values["S3_SECRET_KEY"],
            s3_region=values["S3_REGION"],
            swift_auth_url=values["SWIFT_AUTH_URL"],
            swift_user=values["SWIFT_USER"],
            swift_key=values["SWIFT_KEY"],
        )
    except KeyError:
        pytest.fail(
            f"`scripts/s3-server.sh start` failed with exit code {proc.returncode}; the tests marked "
            "`objects` need this server.\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
