"""Plain Glance on the wire for the clients' tests: :class:`GlanceReplay` answers on loopback with
responses captured from a real Glance 33.0.0 (``tests/data/glance_samples``: status line, headers and
body, byte for byte). It replays; it does not reimplement Glance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "glance_samples"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Seen:
    """One request a loopback server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Seen], Answer]


class Loopback:
    """A threaded HTTP server on 127.0.0.1 that answers every request with ``handle``."""

    def __init__(self, handle: Handler) -> None:
        self.seen: list[Seen] = []
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                outer.seen.append(seen)
                answer = handle(seen)
                self.send_response(answer.status)
                for name, value in answer.headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            # http.server dispatches on these names.
            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sample(name: str) -> Answer:
    """A captured Glance response: ``NAME.headers.txt`` plus ``NAME.json`` or ``NAME.body.txt``."""
    status_line, *lines = (SAMPLES / f"{name}.headers.txt").read_text().strip().splitlines()
    headers = [(k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines if ":" in line)]
    body = b""
    for suffix in (".json", ".body.txt"):
        if (SAMPLES / f"{name}{suffix}").exists():
            body = (SAMPLES / f"{name}{suffix}").read_bytes()
    return Answer(int(status_line.split()[1]), headers, body)


class GlanceReplay(Loopback):
    """Plain Glance on the wire (see the module docstring).

    ``routes`` maps ``"METHOD /path"`` (without the query) to the samples to answer with, in turn;
    the last one keeps being served. Anything else gets Glance's HTML 404.
    """

    def __init__(self, routes: Mapping[str, list[str]]) -> None:
        self._routes = {key: list(names) for key, names in routes.items()}
        self._lock = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, seen: Seen) -> Answer:
        key = f"{seen.method} {urlsplit(seen.path).path}"
        with self._lock:
            names = self._routes.get(key)
            if not names:
                return sample("error_404_tasks")
            name = names.pop(0) if len(names) > 1 else names[0]
        return sample(name)
