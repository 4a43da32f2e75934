"""Record the user guide's terminal session with the real ``glimpse`` CLI against a real server.

Starts ``glimpse-server serve`` on loopback with four file stores, then runs, in a pseudo-terminal of
100x30, the commands a user would type: create an image from a file into ``fast``, copy it to three more
stores with ``--wait``, and a second copy that meets the lock (the 409 paragraph). What the terminal
received is written as an asciinema v2 cast, and the final screen of each scene as an SVG (rendered
with a terminal emulator, pyte, so the picture is what a terminal shows, bars and colours included),
plus the screen of the copy while its bars are under way. It exits 1 when a command's exit code is
not the one the scene expects (0, 0, then 1 for the 409, then 0).

    .venv/bin/python scripts/record_cli_session.py [--size-mib 1536] [--out docs/media]

Nothing here is staged: the figures in the pictures are whatever this machine did in that run.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pyte

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import service  # noqa: E402 - bench/service.py starts and stops one server

from glimpse_client import Client, ClientConfig  # noqa: E402

COLUMNS, LINES = 100, 30
#: create, copy --wait, the copy refused by the lock (409), then watching the holder to its end.
EXPECTED_CODES = [0, 0, 1, 0]
STORES = "fast:file,cheap:file,reliable:file,archive:file"
IDENTITY = {"GLIMPSE_PROJECT_ID": "demo-project", "GLIMPSE_USER_ID": "alice", "GLIMPSE_ROLES": "admin,member"}

# A target store's bar and its percentage.
STORE_BAR = re.compile(r"^\s*(cheap|reliable|archive)\s.*?\b(\d{1,3})%")

# The 16 ANSI colours as a dark terminal theme shows them, and what pyte calls them.
PALETTE = {
    "black": "#1e1e1e",
    "red": "#e06c75",
    "green": "#98c379",
    "brown": "#e5c07b",
    "yellow": "#e5c07b",
    "blue": "#61afef",
    "magenta": "#c678dd",
    "cyan": "#56b6c2",
    "white": "#dcdfe4",
    "brightblack": "#7f848e",
    "brightred": "#f08d95",
    "brightgreen": "#b5e08f",
    "brightyellow": "#f0d08f",
    "brightblue": "#8cc8ff",
    "brightmagenta": "#dd9cf0",
    "brightcyan": "#7fd4de",
    "brightwhite": "#ffffff",
}
FOREGROUND, BACKGROUND = "#dcdfe4", "#1e1e1e"


@dataclass
class Recording:
    """An asciinema v2 cast being written, and a terminal emulator fed the same bytes."""

    started: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)
    screen: pyte.Screen = field(default_factory=lambda: pyte.Screen(COLUMNS, LINES))
    snapshot: pyte.Screen | None = None

    def __post_init__(self) -> None:
        self.stream = pyte.Stream(self.screen)

    def output(self, text: str) -> None:
        self.events.append((time.monotonic() - self.started, text))
        self.stream.feed(text)

    def type_command(self, command: str) -> None:
        self.output("\x1b[1;32m$\x1b[0m ")
        for char in command:
            self.output(char)
            time.sleep(0.02)
        self.output("\r\n")

    def clear(self) -> None:
        self.output("\x1b[2J\x1b[H")

    def write_cast(self, path: Path, title: str) -> None:
        header = {
            "version": 2,
            "width": COLUMNS,
            "height": LINES,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        }
        with path.open("w", encoding="utf-8") as cast:
            cast.write(json.dumps(header) + "\n")
            for at, text in self.events:
                cast.write(json.dumps([round(at, 4), "o", text]) + "\n")


def colour(name: str, default: str) -> str:
    if name == "default":
        return default
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return "#" + name
    return PALETTE.get(name, default)


def screen_svg(screen: pyte.Screen, title: str) -> str:
    """The screen as an SVG: one <text> per line, one <tspan> per run of equal style."""
    cell_w, cell_h, pad = 8.4, 17.0, 14
    width = int(COLUMNS * cell_w + 2 * pad)
    used = max(
        (y for y in range(LINES) if "".join(c.data for c in screen.buffer[y].values()).strip()), default=0
    )
    height = int((used + 1) * cell_h + 2 * pad + 24)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14">',
        f"<title>{html.escape(title)}</title>",
        f'<rect width="100%" height="100%" rx="8" fill="{BACKGROUND}"/>',
        '<circle cx="20" cy="14" r="5" fill="#ff5f56"/><circle cx="36" cy="14" r="5" fill="#ffbd2e"/>'
        '<circle cx="52" cy="14" r="5" fill="#27c93f"/>',
    ]
    for y in range(used + 1):
        row = screen.buffer[y]
        baseline = pad + 24 + y * cell_h + cell_h * 0.75
        runs: list[tuple[str, bool, str, str]] = []
        for x in range(COLUMNS):
            char = row[x]
            fg = colour(char.fg, FOREGROUND)
            bg = colour(char.bg, BACKGROUND)
            if char.reverse:
                fg, bg = bg, fg
            if runs and runs[-1][:3] == (fg, char.bold, bg):
                runs[-1] = (fg, char.bold, bg, runs[-1][3] + char.data)
            else:
                runs.append((fg, char.bold, bg, char.data))
        x_cell = 0
        spans = []
        for fg, bold, bg, text in runs:
            if bg != BACKGROUND:
                parts.append(
                    f'<rect x="{pad + x_cell * cell_w:.1f}" y="{baseline - cell_h * 0.78:.1f}" '
                    f'width="{len(text) * cell_w:.1f}" height="{cell_h:.1f}" fill="{bg}"/>'
                )
            if text.strip():
                weight = ' font-weight="bold"' if bold else ""
                spans.append(
                    f'<tspan x="{pad + x_cell * cell_w:.1f}" fill="{fg}"{weight}>{html.escape(text)}</tspan>'
                )
            x_cell += len(text)
        if spans:
            parts.append(f'<text y="{baseline:.1f}" xml:space="preserve">{"".join(spans)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def run(
    recording: Recording,
    command: str,
    env: dict[str, str],
    cwd: Path,
    timeout: float = 300,
    snapshot: Callable[[pyte.Screen], bool] | None = None,
) -> int:
    """Type ``command`` into the recording, run it in a pseudo-terminal, record what it prints.

    ``snapshot``, when given, is asked after each chunk of output; the first screen it accepts is
    kept as ``recording.snapshot``."""
    recording.type_command(command)
    child = pexpect.spawn(
        "/bin/bash",
        ["-c", command],
        env=env,
        cwd=str(cwd),
        dimensions=(LINES, COLUMNS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=timeout,
    )
    while True:
        try:
            chunk = child.read_nonblocking(65536, timeout=timeout)
        except pexpect.EOF:
            break
        recording.output(chunk)
        if snapshot is not None and recording.snapshot is None and snapshot(recording.screen):
            recording.snapshot = copy.deepcopy(recording.screen)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0))


def _halfway(screen: pyte.Screen) -> bool:
    """A whole frame of the copy under way: a bar for each of the three stores, all between 25 and 90 %."""
    percents = {
        match.group(1): int(match.group(2))
        for match in (STORE_BAR.search(line) for line in screen.display)
        if match
    }
    return len(percents) == 3 and all(25 <= value <= 90 for value in percents.values())


def write_image(path: Path, size_mib: int) -> None:
    block = os.urandom(1024 * 1024)
    with path.open("wb") as out:
        for i in range(size_mib):
            out.write(block[i % 256 :] + block[: i % 256])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1536, help="size of the demo image (default 1536)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "media", help="where casts and SVGs go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    glimpse = shutil.which("glimpse", path=str(Path(sys.executable).parent))
    if glimpse is None:
        print("record: the `glimpse` CLI is not installed (make install)", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="glimpse-session-") as tmp:
        work = Path(tmp)
        os.environ["GLIMPSE_ENABLED_BACKENDS"] = STORES
        os.environ["GLIMPSE_TASK__TASK_PROGRESS_INTERVAL"] = "0.5"
        server = service.Server(work / "data", workers=1, log_level="WARNING")
        (work / "data").mkdir()
        server.start()
        try:
            write_image(work / "ubuntu.raw", args.size_mib)
            env = {
                "PATH": f"{Path(glimpse).parent}:/usr/bin:/bin",
                "TERM": "xterm-256color",
                "COLUMNS": str(COLUMNS),
                "LINES": str(LINES),
                "HOME": str(work),
                "GLIMPSE_URL": server.url,
                **IDENTITY,
            }

            scene = Recording()
            create = (
                "glimpse image create ubuntu-24.04 --disk-format raw --container-format bare "
                "--file ubuntu.raw --store fast -c id -c status -c stores"
            )
            codes = [run(scene, create, env, work)]
            copy_command = (
                "glimpse image copy ubuntu-24.04 --stores cheap,reliable,archive --wait -c id -c stores"
            )
            codes.append(run(scene, copy_command, env, work, snapshot=_halfway))
            scene.write_cast(args.out / "copy-three-stores.cast", "glimpse image copy to three stores")
            (args.out / "copy-three-stores.svg").write_text(screen_svg(scene.screen, "glimpse image copy"))
            if scene.snapshot is not None:
                (args.out / "copy-three-stores-progress.svg").write_text(
                    screen_svg(scene.snapshot, "glimpse image copy, under way")
                )

            # The second scene: bob is copying another image when alice asks for a copy of it too.
            conflict = Recording()
            config = ClientConfig(
                server.url, project_id="demo-project", user_id="bob", roles=("admin", "member")
            )
            with Client(config) as sdk:
                image = sdk.create_image(name="debian-13", disk_format="raw", container_format="bare")
                sdk.upload(image.id, work / "ubuntu.raw")
                sdk.copy_image(image.id, stores=["cheap", "reliable", "archive"])
            codes.append(run(conflict, "glimpse image copy debian-13 --stores cheap --wait", env, work))
            codes.append(run(conflict, "glimpse image tasks debian-13 --watch", env, work))
            conflict.write_cast(args.out / "lock-conflict.cast", "glimpse meets the import lock")
            (args.out / "lock-conflict.svg").write_text(
                screen_svg(conflict.screen, "glimpse image copy: 409")
            )
        finally:
            server.stop()
    print(
        f"record: exit codes {codes}; wrote copy-three-stores and lock-conflict (.cast, .svg) to {args.out}"
    )
    if codes != EXPECTED_CODES:
        print(f"record: expected exit codes {EXPECTED_CODES}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
