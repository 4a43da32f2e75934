"""Serve a real Keystone (the ``keystone`` package's public WSGI application) on 127.0.0.1.

    python keystone_serve.py CONFIG_FILE PORT

Run by ``keystonesupport.KeystoneServer`` as its own process. wsgiref answers one request at a time
with HTTP/1.0 (a connection per request), which is all a test's handful of clients need and keeps
Keystone's SQLite database to one thread.
"""

from __future__ import annotations

import os
import sys
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    config_file, port = sys.argv[1], int(sys.argv[2])
    os.environ["OS_KEYSTONE_CONFIG_FILES"] = config_file
    del sys.argv[1:]  # Keystone parses the command line as its own options
    from keystone.server.wsgi import initialize_public_application

    application = initialize_public_application()
    with make_server("127.0.0.1", port, application, handler_class=_Quiet) as httpd:
        print(f"keystone serving on 127.0.0.1:{port}", flush=True)
        httpd.serve_forever()


if __name__ == "__main__":
    main()
