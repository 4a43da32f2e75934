"""Headless Chromium for the web view tests: Debian's ``chromium`` driven by Playwright's Python package.

``scripts/chromium.sh path`` installs the browser with apt-get when it is missing (as root, once per
machine, under a file lock so that parallel workers wait for the first) and prints its executable;
Playwright launches that executable, never a browser of its own download. While Playwright's
synchronous API runs, ``asyncio.run()`` cannot be called in the same thread, so the ``browser``
fixture (conftest.py) lives for one module, not the session. A browser that cannot be
installed or started makes the tests that need it fail with the script's or the browser's output;
they are never skipped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from filelock import FileLock
from playwright.sync_api import Browser, Error, sync_playwright

from livesupport import REPO_ROOT

CHROMIUM_SCRIPT = REPO_ROOT / "scripts" / "chromium.sh"
INSTALL_TIMEOUT = 900  # seconds: the first run downloads and installs the Debian package


def chromium_executable() -> str:
    """The system Chromium, installed first if missing; fails the test with the script's output."""
    lock_dir = REPO_ROOT / ".test-services"
    lock_dir.mkdir(exist_ok=True)
    with FileLock(str(lock_dir / "chromium-install.lock")):
        done = subprocess.run(
            ["bash", str(CHROMIUM_SCRIPT), "path"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not path:
        pytest.fail(
            f"scripts/chromium.sh path exited with {done.returncode}: Chromium is needed by the web view "
            f"tests and could not be installed.\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return path


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """One headless Chromium; as root it needs ``--no-sandbox`` (Chromium refuses root otherwise)."""
    executable = chromium_executable()
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=args, timeout=60_000)
        except Error as exc:
            pytest.fail(f"Chromium ({executable}) could not be started: {exc}", pytrace=False)
        try:
            yield browser
        finally:
            browser.close()
