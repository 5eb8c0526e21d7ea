"""A small, fast HTTP/1.1 server for JSON-over-unix-socket APIs, on asyncio and httptools.

Both of Orlop's sockets (one per Docker driver, and the admin socket) are RPC APIs: a POST to
a path, a JSON body in, a JSON body out. That needs no framework, and the request rate of
`docker ps`/`docker inspect` rewards a thin layer: a handler is called straight from the
parser callback and, when it can answer synchronously (Get, Path, List), its response is
written before the next request is even parsed. Asynchronous handlers (Mount, Create) run
as tasks; responses on one connection still leave in request order.

A query string (`GET /v1/events?since=10m`) is taken as the JSON body's fields (strings),
when there is no body. A handler may answer a `Stream`: the status line and headers, then
each chunk as it comes (no length; the connection closes at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import httptools

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stream:
    """A response sent as it is made: `chunks` written one by one, then the connection
    closes (a client that goes away cancels it)."""

    chunks: AsyncIterator[bytes]
    content_type: bytes = b"application/x-ndjson"


Response = tuple[int, bytes]
Handler = Callable[[bytes], "Response | Awaitable[Response | Stream]"]

MAX_BODY = 1024 * 1024
REQUEST_TIMEOUT = 30.0  # a started request must arrive whole within this
MAX_QUEUED = 64  # pipelined requests waiting behind a slow one, per connection
CONTENT_TYPE = b"application/json"


# Sockets bound before Orlop was imported (a managed plugin's, by orlop.managed.start; or
# systemd's, orlop.ops.activation), by path: start() serves on them instead of binding anew.
# The flag: whether the path stays when the server closes (systemd keeps listening there).
_ADOPTED: dict[str, tuple[socket.socket, bool]] = {}


def adopt_socket(path: str, sock: socket.socket, keep_path: bool = False) -> None:
    """Let the server for `path` take over `sock`, already bound and listening there;
    `keep_path`: leave the socket file at close (its owner, systemd, still listens on it)."""
    _ADOPTED[path] = (sock, keep_path)


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


def error_body(message: str) -> bytes:
    import json

    return json.dumps({"Err": message}).encode()


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_busy",
        "_closing",
        "_forbidden",
        "_in_message",
        "_parser",
        "_queued",
        "_server",
        "_stream",
        "_timer",
        "_transport",
        "_url",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._body_size = 0
        self._forbidden = False
        self._busy = False  # an asynchronous handler is serving this connection
        self._queued: deque[tuple[bytes, bytes, bool]] = deque()
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._in_message = False
        self._stream: asyncio.Task[None] | None = None

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        # A refused peer still gets its request read and a 403 answer: closing at once
        # would show the client only a broken pipe.
        self._forbidden = not self._server.accept_peer(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._transport = None
        self._cancel_timer()
        if self._stream is not None:
            self._stream.cancel()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            if self._body_size > self._server.max_body:
                limit = self._server.max_body
                self._fail(413, f"request body too large: at most {limit} bytes are accepted")
            else:
                self._fail(400, f"malformed HTTP request: {error}")
        if self._in_message and self._timer is None and not self._closing:
            # Part of a request is buffered: it must be completed in time.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(REQUEST_TIMEOUT, self._timeout)

    # httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        too_large = value.isdigit() and int(value) > self._server.max_body
        if too_large and name.lower() == b"content-length":
            self._body_size = int(value)
            raise httptools.HttpParserError("body too large")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._server.max_body:
            raise httptools.HttpParserError("body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._cancel_timer()
        url, body = self._url, b"".join(self._body)
        self._url, self._body, self._body_size = b"", [], 0
        keep_alive = self._parser.should_keep_alive()
        path, _, query = url.partition(b"?")
        if query and not body:
            body = _query_body(query)
        if self._forbidden:
            self._fail(403, "permission denied: the admin socket is for root only")
            return
        if self._busy or self._queued:
            # Pipelined behind a request still being served: run it after, in order.
            self._queued.append((path, body, keep_alive))
            if len(self._queued) == MAX_QUEUED and self._transport is not None:
                self._transport.pause_reading()  # back-pressure on a runaway pipeline
            return
        self._dispatch(path, body, keep_alive)

    # internals --------------------------------------------------------------------------
    def _dispatch(self, path: bytes, body: bytes, keep_alive: bool) -> None:
        handler = self._server.routes.get(path)
        if handler is None:
            result: Response | Awaitable[Response | Stream] = (
                404,
                error_body(f"unknown endpoint {path.decode(errors='replace')}"),
            )
        else:
            try:
                result = handler(body)
            except Exception as error:  # a handler bug must not take the connection down
                log.exception("handler for %s failed", path)
                result = (500, error_body(f"internal error: {error}"))
        if isinstance(result, tuple):
            self._write(result, keep_alive)
            return
        # Served as a task: it completes even if the client goes away meanwhile, so a
        # Mount that was started is also recorded.
        self._busy = True
        task = asyncio.ensure_future(result)
        task.add_done_callback(lambda t: self._async_done(t, keep_alive))

    def _async_done(self, task: asyncio.Future[Response | Stream], keep_alive: bool) -> None:
        self._busy = False
        try:
            response = task.result()
        except Exception as error:
            log.exception("async handler failed")
            response = 500, error_body(f"internal error: {error}")
        if isinstance(response, Stream):
            self._start_stream(response)
            return
        self._write(response, keep_alive)
        while self._queued and not self._busy and not self._closing:
            self._dispatch(*self._queued.popleft())
            if len(self._queued) == MAX_QUEUED - 1 and self._transport is not None:
                self._transport.resume_reading()

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self._transport is None or self._closing:
            return
        self._transport.write(self._format(*response, keep_alive))
        if not keep_alive:
            self._close()

    def _start_stream(self, stream: Stream) -> None:
        if self._transport is None or self._closing:
            return
        self._busy = True  # for good: the connection closes when the stream ends
        self._transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + stream.content_type
            + b"\r\nConnection: close\r\n\r\n"
        )
        self._stream = asyncio.ensure_future(self._send(stream))
        self._server.streams.add(self._stream)
        self._stream.add_done_callback(self._server.streams.discard)

    async def _send(self, stream: Stream) -> None:
        try:
            async for chunk in stream.chunks:
                if self._transport is None or self._closing:
                    break
                self._transport.write(chunk)
        except Exception:
            log.exception("streaming a response failed")
        finally:
            self._stream = None
            self._close()
            close = getattr(stream.chunks, "aclose", None)
            if close is not None:  # now, not when collected: its `finally` lets go of things
                with contextlib.suppress(Exception):
                    await close()

    @staticmethod
    def _format(status: int, body: bytes, keep_alive: bool) -> bytes:
        head = _status_line(status) if status != 200 else b"HTTP/1.1 200 OK\r\n"
        return b"".join(
            (
                head,
                b"Content-Type: ",
                CONTENT_TYPE,
                b"\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n" if keep_alive else b"\r\nConnection: close\r\n",
                b"\r\n",
                body,
            )
        )

    def _fail(self, status: int, message: str) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(self._format(status, error_body(message), False))
        self._close()

    def _timeout(self) -> None:
        self._timer = None
        self._fail(408, f"request not completed within {REQUEST_TIMEOUT:g}s")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        self._closing = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()


class HttpServer:
    """Serve `routes` (path → handler) on a unix socket."""

    def __init__(
        self,
        routes: Mapping[bytes, Handler],
        *,
        max_body: int = MAX_BODY,
        root_only: bool = False,
    ) -> None:
        self.routes = dict(routes)
        self.max_body = max_body
        self.root_only = root_only
        self._server: asyncio.base_events.Server | None = None
        self.streams: set[asyncio.Task[None]] = set()  # responses being streamed
        self.path = ""
        self._keep_path = False

    def accept_peer(self, transport: asyncio.BaseTransport) -> bool:
        if not self.root_only:
            return True
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return bool(uid == 0)

    async def start(self, path: str, mode: int = 0o660) -> None:
        """Listen on `path`, replacing a stale socket left by a crashed daemon."""
        loop = asyncio.get_running_loop()
        adopted, self._keep_path = _ADOPTED.pop(path, (None, False))
        if adopted is not None:
            self._server = await loop.create_unix_server(lambda: _Connection(self), sock=adopted)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _remove_stale_socket(path)
            self._server = await loop.create_unix_server(
                lambda: _Connection(self), path, backlog=1024
            )
        os.chmod(path, mode)
        self.path = path

    async def close(self) -> None:
        for stream in list(self.streams):
            stream.cancel()  # a follower would hold the server open
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self.path and not self._keep_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _query_body(query: bytes) -> bytes:
    """`a=1&b=x` as the JSON body `{"a": "1", "b": "x"}` (the last of a repeated name)."""
    import json

    fields = urllib.parse.parse_qsl(query.decode(errors="replace"), keep_blank_values=True)
    return json.dumps(dict(fields)).encode()


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover of a crashed daemon
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use by a running process: is another orlop serving it?")
