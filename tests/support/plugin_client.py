"""A Docker-plugin-protocol client over a real unix socket, as dockerd would talk to it."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("plugin", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class PluginClient:
    """POST JSON to /VolumeDriver.* on one keep-alive connection; returns (status, body)."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.connection = _Unix(path, timeout)

    def raw(self, endpoint: str, body: bytes) -> tuple[int, Any]:
        self.connection.request(
            "POST",
            endpoint,
            body=body,
            headers={"Content-Type": "application/vnd.docker.plugins.v1.2+json"},
        )
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def call(self, method: str, **body: Any) -> dict[str, Any]:
        endpoint = method if method.startswith("/") else f"/VolumeDriver.{method}"
        status, data = self.raw(endpoint, json.dumps(body).encode())
        assert isinstance(data, dict), data
        data["_status"] = status
        return data

    def ok(self, method: str, **body: Any) -> dict[str, Any]:
        """Call and insist on success."""
        data = self.call(method, **body)
        assert data["_status"] == 200 and not data.get("Err"), data
        return data

    def close(self) -> None:
        self.connection.close()
