"""systemd's notify protocol from a real daemon: READY after recovery, watchdog pings, STOPPING."""

from __future__ import annotations

import socket
import time

from tests.support.daemon import OrlopDaemon
from tests.support.names import unique


def _messages(sock: socket.socket, until: str, timeout: float = 10.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(until in message for message in seen):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        seen.append(sock.recv(4096).decode())
    return seen


def test_ready_watchdog_and_stopping() -> None:
    daemon = OrlopDaemon({unique(): {"backend": "directory"}})
    path = str(daemon.root / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        try:
            daemon.start(extra_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
            seen = _messages(sock, "READY=1")
            ready = next(m for m in seen if "READY=1" in m)
            assert "STATUS=ready; drivers: " in ready
            assert "WATCHDOG=1" in _messages(sock, "WATCHDOG=1")[-1]
            daemon.kill(15)
            assert any("STOPPING=1" in m for m in _messages(sock, "STOPPING=1"))
        finally:
            daemon.destroy()
