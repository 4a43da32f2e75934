"""A local web server for web-download tests: serves fixed files on 127.0.0.1, optionally slowly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class WebServer:
    """Serves ``files`` (path → bytes) on 127.0.0.1; ``delay`` seconds between 64 KiB chunks."""

    files: dict[str, bytes] = field(default_factory=dict)
    delay: float = 0.0
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def filter_options(self) -> dict[str, str]:
        return {"allowed_hosts": "127.0.0.1", "allowed_ports": str(self.port)}

    @property
    def filter_environ(self) -> dict[str, str]:
        return {f"GLIMPSE_IMPORT_FILTERING_OPTS__{k.upper()}": v for k, v in self.filter_options.items()}


def _handler(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            data = server.files.get(self.path)
            if data is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            step = 64 * 1024
            try:
                for start in range(0, len(data), step):
                    self.wfile.write(data[start : start + step])
                    self.wfile.flush()
                    if server.delay:
                        time.sleep(server.delay)
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


def serve(files: dict[str, bytes], delay: float = 0.0) -> Iterator[WebServer]:
    """A running web server (use as a generator fixture body)."""
    web = WebServer(files=files, delay=delay)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(web))
    httpd.daemon_threads = True
    web.port = httpd.server_address[1]
    web._server = httpd
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield web
    finally:
        httpd.shutdown()
        httpd.server_close()
