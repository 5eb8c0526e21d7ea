"""A backend endpoint that comes up late: a TCP port that refuses every connection until
`open()`, then relays each connection to the real test server behind it.

So a daemon configured with `url` meets a truly unreachable backend (connection refused,
as when the cloud's endpoint or the file server is not up yet at boot), and the same URL
answers once the test says so, without restarting anything.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


def reserve_port() -> int:
    """A free port on the loopback (nothing listens on it once this returns)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LateRelay:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = reserve_port()
        self.opened_at: float | None = None  # time.monotonic() of open()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._relayed: list[socket.socket] = []  # every relayed connection's two ends

    def url(self, scheme: str = "http", path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def open(self, after: float = 0.0) -> LateRelay:
        """Start answering (relaying) on the port, now or `after` seconds from now."""
        if after > 0:
            timer = threading.Timer(after, self.open)
            timer.daemon = True
            timer.start()
            self._threads.append(timer)
            return self
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.2)
        self._listener = listener
        self.opened_at = time.monotonic()
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def shut(self) -> None:
        """Refuse connections again, and cut those relayed (a client's kept-alive ones too)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        relayed, self._relayed = self._relayed, []
        for end in relayed:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if isinstance(thread, threading.Timer):
                thread.cancel()
        self.shut()

    def _accept(self) -> None:
        listener = self._listener
        while not self._stop.is_set() and listener is not None:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            self._relayed += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        source.settimeout(None)
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)
