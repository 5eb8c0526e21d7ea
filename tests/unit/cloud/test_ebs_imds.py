"""This instance's identity from IMDSv2, against a faithful metadata server on 127.0.0.1.

The server behaves like EC2's with IMDSv1 disabled: a GET without a session token (from
PUT /latest/api/token with a TTL header) answers 401.
"""

from __future__ import annotations

import http.server
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.cloud.ebs.client import EbsSettings, instance_identity
from orlop.backends.cloud.ebs.provider import EbsProvider
from orlop.core.model import BackendError
from tests.servers.ec2.server import free_port

METADATA = {
    "/latest/meta-data/instance-id": "i-0123456789abcdef0",
    "/latest/meta-data/placement/availability-zone": "eu-west-3b",
}


class _Imds(http.server.BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_PUT(self) -> None:
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if self.path != "/latest/api/token" or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            self._send(400, b"")
            return
        token = secrets.token_urlsafe(16)
        self.server.tokens.add(token)
        self._send(200, token.encode())

    def do_GET(self) -> None:
        self.server.gets += 1
        if self.headers.get("X-aws-ec2-metadata-token") not in self.server.tokens:
            self._send(401, b"")
        elif self.path in METADATA:
            self._send(200, METADATA[self.path].encode())
        else:
            self._send(404, b"")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def imds() -> Iterator[Any]:
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Imds)
    server.tokens = set()
    server.gets = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def provider_with(state: Path, **settings: Any) -> EbsProvider:
    return EbsProvider(EbsSettings.parse("ebs", settings), str(state))


def test_identity_from_imdsv2(imds: Any) -> None:
    assert instance_identity(imds.url, 2) == ("i-0123456789abcdef0", "eu-west-3b")
    assert imds.gets == 2 and len(imds.tokens) == 1


def test_provider_uses_imds_unless_overridden(
    imds: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    provider = provider_with(tmp_path / "a", imds_endpoint=imds.url)
    found = provider.identity()
    assert (found.instance, found.zone) == ("i-0123456789abcdef0", "eu-west-3b")
    assert provider.ec2.region == "eu-west-3"  # the region follows the zone
    pinned = provider_with(
        tmp_path / "b",
        imds_endpoint=imds.url,
        instance_id="i-pinned",
        availability_zone="us-west-2c",
    )
    before = imds.gets
    found = pinned.identity()
    assert (found.instance, found.zone) == ("i-pinned", "us-west-2c")
    assert imds.gets == before  # both overridden: IMDS is not asked


def test_no_imds_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    provider = provider_with(tmp_path, imds_endpoint=url)
    with pytest.raises(BackendError, match="set instance_id and availability_zone"):
        provider.identity()
