"""A client for the daemon's admin socket."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any, NoReturn

from orlop.core.model import OrlopError


class DaemonUnreachable(OrlopError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path
        self.unix_socket: socket.socket | None = None  # kept: `sock` goes at a Connection: close

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = self.unix_socket = sock


class AdminClient:
    def __init__(self, socket_path: str, timeout: float = 120.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, endpoint: str, /, **body: Any) -> Any:
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            response = self._request(connection, endpoint, body)
            data = json.loads(response.read() or b"null")
        except (ConnectionError, OSError) as error:
            raise DaemonUnreachable(
                f"cannot reach the orlop daemon at {self.socket_path}: {error}"
            ) from None
        finally:
            connection.close()
        if response.status != 200:
            _raise(response.status, data)
        return data

    def stream(self, endpoint: str, /, **body: Any) -> Iterator[Any]:
        """A call answered with JSON lines (events): each line's object as it arrives; no
        timeout once the answer has started (a follow waits for as long as it takes)."""
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            response = self._request(connection, endpoint, body)
            if response.status != 200:
                _raise(response.status, json.loads(response.read() or b"null"))
            if connection.unix_socket is not None:
                connection.unix_socket.settimeout(None)  # the response reads through it
            for line in response:
                if line.strip():
                    yield json.loads(line)
        except (ConnectionError, OSError) as error:
            raise DaemonUnreachable(
                f"lost the orlop daemon at {self.socket_path}: {error}"
            ) from None
        finally:
            connection.close()

    def _request(
        self, connection: _UnixConnection, endpoint: str, body: dict[str, Any]
    ) -> http.client.HTTPResponse:
        try:
            connection.request(
                "POST",
                f"/v1/{endpoint}",
                body=json.dumps(body),
                headers={"Content-Type": "application/json"},
            )
            return connection.getresponse()
        except FileNotFoundError:
            raise DaemonUnreachable(
                f"the orlop daemon is not running (no socket at {self.socket_path}): "
                "start it with `orlop serve`"
            ) from None
        except PermissionError:
            raise DaemonUnreachable(
                f"permission denied on {self.socket_path}: the admin socket is root-only"
            ) from None
        except (ConnectionError, OSError) as error:
            raise DaemonUnreachable(
                f"cannot reach the orlop daemon at {self.socket_path}: {error}"
            ) from None


def _raise(status: int, data: Any) -> NoReturn:
    message = data.get("Err") if isinstance(data, dict) else None
    raise OrlopError(message or f"daemon answered HTTP {status}")
