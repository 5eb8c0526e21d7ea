"""A real S3-speaking server on 127.0.0.1 (moto in server mode), and a web server that is not S3.

moto keeps objects in memory; it speaks the S3 REST protocol over plain HTTP, which rclone
and boto talk to as to any S3 endpoint. The machine's CA-bundle variables are removed from
the server's environment (they are meant for TLS to the outside world).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.servers.sshd.server import free_port

CA_VARIABLES = (
    "AWS_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
ACCESS_KEY = "orlop-test-key"
SECRET_KEY = "orlop-test-secret-0123456789"


def plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CA_VARIABLES}


class S3Server:
    """moto's S3; with `enforce_auth` it checks credentials (ours are unknown to it, so
    every request is refused: a server that will not let us create a bucket)."""

    def __init__(self, enforce_auth: bool = False) -> None:
        self.enforce_auth = enforce_auth
        self.root = Path(tempfile.mkdtemp(prefix="orlop-s3-"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "moto.log"
        self.credentials_file = self.root / "credentials"
        self.credentials_file.write_text(
            f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        )
        self.credentials_file.chmod(0o600)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**plain_env(), "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
                if self.enforce_auth
                else plain_env(),
                start_new_session=True,
            )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited: {self.log_path.read_text()[-2000:]}")
            try:
                opener.open(f"{self.endpoint}/", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self  # it answers (refusing an unsigned request is an answer)
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("moto did not answer within 60s")

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 S3 client for checking what the server holds."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(proxies={}, retries={"max_attempts": 1}),
            verify=False,
        )

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Object key → size, for every object under `prefix` in `bucket`."""
        client = self.client()
        found: dict[str, int] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found

    def options(self, bucket: str, **extra: str) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "bucket": bucket,
            "credentials_file": str(self.credentials_file),
            **extra,
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class _NotS3(http.server.BaseHTTPRequestHandler):
    def _page(self) -> None:
        body = b"<html><body>Welcome to a web server that is not S3</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _page

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def not_s3_server() -> Iterator[str]:
    """An HTTP endpoint that answers every request with an HTML page: not S3."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
