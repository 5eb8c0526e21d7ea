"""A client for the daemon's admin socket."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from orlop.core.model import OrlopError


class DaemonUnreachable(OrlopError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class AdminClient:
    def __init__(self, socket_path: str, timeout: float = 120.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, endpoint: str, /, **body: Any) -> Any:
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            connection.request(
                "POST",
                f"/v1/{endpoint}",
                body=json.dumps(body),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            data = json.loads(response.read() or b"null")
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
        finally:
            connection.close()
        if response.status != 200:
            message = data.get("Err") if isinstance(data, dict) else None
            raise OrlopError(message or f"daemon answered HTTP {response.status}")
        return data
