"""A local TCP forwarder that can be cut and restored: an outage of the monitoring endpoint, on demand.

While cut, connections to its port are refused and the open ones are closed, as
when the monitoring service's host goes away; restored, it listens on the same
port again, so the URLs the worker was given keep working.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream_port`; a context manager."""

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self._host = host
        self._upstream = upstream_port
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self.port = 0

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cut()

    def url(self, name: str) -> str:
        return f"http://{self._host}:{self.port}/{name}"

    def restore(self) -> None:
        """Listen (again, on the same port) and forward."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        stopped = threading.Event()
        with self._lock:
            self._listener, self._stopped = listener, stopped
        threading.Thread(target=self._accept, args=(listener, stopped), name="TcpProxy", daemon=True).start()

    def cut(self) -> None:
        """Stop listening (new connections are refused) and close every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = list(self._sockets), set()
            self._stopped.set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection((self._host, self._upstream), timeout=5.0)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if stopped.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            pair = [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair), name="TcpProxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: list[socket.socket]) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            pair.remove(src)  # the last direction to end closes the connection
            last = not pair
            if last:
                self._sockets.difference_update((src, dst))
        if last:
            src.close()
            dst.close()
