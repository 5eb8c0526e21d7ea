"""The opt-in `metrics` listener: GET /metrics (Prometheus text) and GET /healthz.

It listens on HOST:PORT or on a unix socket path; one request per connection, answered
from memory (see `metrics`), so a scrape never waits on a backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from orlop.ops.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0
MAX_HEADER_LINES = 100


def parse_address(address: str) -> tuple[str, int] | str:
    """HOST:PORT as (host, port), or an absolute unix socket path as itself."""
    if address.startswith("/"):
        return address
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"metrics address {address!r} must be HOST:PORT (e.g. 127.0.0.1:9450, "
            "[::1]:9450) or an absolute unix socket path"
        )
    return host, int(port)


class MetricsListener:
    def __init__(
        self,
        address: str,
        render: Callable[[], bytes],
        health: Callable[[], tuple[bool, dict[str, Any]]],
    ) -> None:
        self.address = parse_address(address)
        self.render = render
        self.health = health
        self._server: asyncio.base_events.Server | None = None
        self.bound = ""  # where it listens, with the port the kernel chose for port 0

    async def start(self) -> None:
        if isinstance(self.address, str):
            os.makedirs(os.path.dirname(self.address), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
            self._server = await asyncio.start_unix_server(self._serve, self.address)
            os.chmod(self.address, 0o660)
            self.bound = self.address
        else:
            host, port = self.address
            self._server = await asyncio.start_server(self._serve, host, port)
            name = self._server.sockets[0].getsockname()
            self.bound = f"{host}:{name[1]}"
        log.info("metrics listening on %s", self.bound)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if isinstance(self.address, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target = await asyncio.wait_for(_read_request(reader), REQUEST_TIMEOUT)
            status, content_type, body = self._answer(method, target)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _answer(self, method: str, target: str) -> tuple[str, str, bytes]:
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET and HEAD\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE, self.render()
        if path == "/healthz":
            healthy, details = self.health()
            body = json.dumps(details).encode() + b"\n"
            status = "200 OK" if healthy else "503 Service Unavailable"
            return status, "application/json", body
        return "404 Not Found", "text/plain", b"not found: try /metrics or /healthz\n"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    line = (await reader.readline()).decode("latin-1").split()
    if len(line) != 3:
        raise ValueError("bad request line")
    for _ in range(MAX_HEADER_LINES):
        if (await reader.readline()) in (b"\r\n", b"\n", b""):
            return line[0], line[1]
    raise ValueError("too many headers")
