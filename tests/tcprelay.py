"""A TCP relay on loopback between Glimpse and a real service (PostgreSQL, the object store server).

It lets a test cause real network faults without touching the shared service itself: ``stop()``
closes the port and cuts every relayed connection (the service is unreachable), ``pause()`` keeps
accepting connections but moves no byte (the service hangs), ``rate`` throttles every connection to
that many bytes per second (a slow link), ``drop_replies(n)`` lets requests through but cuts the
next ``n`` connections as the first answer on each starts to come back (the service did the work,
the client never hears of it), and ``start()`` / ``resume()`` bring it back on the same port. Plain
threads, so it serves whatever event loop the code under test runs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from livesupport import free_port

BLOCK = 64 * 1024


class TcpRelay:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        #: Bytes per second for each direction of each connection; ``None``: as fast as it goes.
        self.rate: float | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._replies_to_drop = 0
        #: How many answers were dropped so far.
        self.dropped = 0

    def __enter__(self) -> TcpRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume()
        self.stop()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="relay-accept").start()

    def stop(self) -> None:
        """Close the port and cut every connection: the service is unreachable until ``start()``."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def pause(self) -> None:
        """Accept connections but move no byte: the service seems to hang."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def drop_replies(self, count: int) -> None:
        """Cut each of the next ``count`` connections whose first answer starts to arrive."""
        with self._lock:
            self._replies_to_drop = count

    def _drop_this_reply(self) -> bool:
        with self._lock:
            if self._replies_to_drop <= 0:
                return False
            self._replies_to_drop -= 1
            self.dropped += 1
            return True

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink, reply in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, reply), daemon=True, name="relay-pump"
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, reply: bool) -> None:
        first = True
        try:
            while True:
                data = source.recv(BLOCK)
                if not data:
                    break
                self._flowing.wait()
                if reply and first and self._drop_this_reply():
                    break
                first = False
                rate = self.rate
                if rate:
                    for start in range(0, len(data), 16 * 1024):
                        piece = data[start : start + 16 * 1024]
                        sink.sendall(piece)
                        time.sleep(len(piece) / rate)
                else:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets -= {source, sink}
            for sock in (source, sink):
                sock.close()
