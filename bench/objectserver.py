"""The Swift + s3api test server of ``scripts/s3-server.sh``, and plain clients for it.

The benchmarks measure Glimpse's object stores against what the same client libraries reach on the
same server with nothing around them; this module starts (or reuses) the server and makes those
plain clients.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import swiftclient.client

ROOT = Path(__file__).resolve().parent.parent


def start() -> dict[str, str]:
    """Start the server (a no-op when it already runs) and return its settings (S3_*, SWIFT_*)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "s3-server.sh"), "start"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"scripts/s3-server.sh start failed:\n{proc.stderr}")
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def s3_client(env: dict[str, str], threads: int) -> Any:
    """A boto3 S3 client configured as the S3 store configures its own (path style, no extra CRCs)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["S3_ACCESS_KEY"],
        aws_secret_access_key=env["S3_SECRET_KEY"],
        config=botocore.config.Config(
            region_name=env["S3_REGION"],
            s3={"addressing_style": "path"},
            max_pool_connections=threads * 2,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def swift_connection(env: dict[str, str]) -> swiftclient.client.Connection:
    """A python-swiftclient connection with v1 (tempauth) authentication, as the Swift store makes."""
    return swiftclient.client.Connection(
        authurl=env["SWIFT_AUTH_URL"],
        user=env["SWIFT_USER"],
        key=env["SWIFT_KEY"],
        auth_version="1",
        retries=0,
    )
