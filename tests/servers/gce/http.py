"""The GCE test server's HTTP front end, and the metadata server, on 127.0.0.1.

Each request is matched to a Compute v1 method through the discovery document; its
parameters and body are checked, then its answer. A misfit is answered 400 (as Compute
Engine would refuse it) and recorded in `GceServer.violations`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers.gce import instances  # noqa: F401  (registers its methods)
from tests.servers.gce.disks import HANDLERS
from tests.servers.gce.ops import ApiError
from tests.servers.gce.server import GceServer

UNLOCKED = {"compute.zoneOperations.wait", "compute.globalOperations.wait"}  # they block


class _Handler(BaseHTTPRequestHandler):
    server_version = "GCE-fake"
    disable_nagle_algorithm = True  # one segment per answer, no delayed-ACK stalls
    protocol_version = "HTTP/1.1"
    gce: GceServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        gce = self.gce
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        matched = gce.discovery.match(self.command, url.path)
        if matched is None:
            gce.violations.append(f"{self.command} {url.path}: no such Compute v1 method")
            self._send(404, ApiError(404, "notFound", f"{url.path} not found").body())
            return
        method, params = matched
        gce.calls.append(method.id)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "<not JSON>"
        problems = gce.discovery.check_parameters(method, params, query)
        problems += gce.discovery.check_request(method, body)
        if problems:
            gce.violations.extend(problems)
            self._send(400, ApiError(400, "invalid", "; ".join(problems)).body())
            return
        time.sleep(gce.latency / 2)
        status, answer = self._answer(method.id, params, query, body)
        if status == 200:
            misfits = gce.discovery.check_response(method, answer)
            gce.violations.extend(misfits)
        time.sleep(gce.latency / 2)
        self._send(status, answer)

    def _answer(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        gce = self.gce
        handler = HANDLERS.get(method_id)
        if handler is None:
            gce.violations.append(f"{method_id}: called, but the test server does not offer it")
            return 501, ApiError(501, "notImplemented", f"{method_id} not offered").body()
        try:
            with gce.lock:
                if params.get("project") not in gce.projects:
                    raise ApiError(
                        404,
                        "notFound",
                        f"The resource 'projects/{params.get('project')}' was not found",
                    )
                if params["project"] == "orlop-locked" and not self.headers.get("Authorization"):
                    raise ApiError(
                        401, "required", "Request is missing required authentication credential."
                    )
                if gce.failures:
                    raise gce.failures.pop(0)
                if method_id not in UNLOCKED:
                    return 200, handler(gce, params, query, body)
            return 200, handler(gce, params, query, body)
        except ApiError as error:
            return error.status, error.body()


def serve(gce: GceServer) -> tuple[ThreadingHTTPServer, str]:
    """Put `gce` on a free port; (the server, its endpoint URL for `endpoint_url`)."""
    handler = type("GceHandler", (_Handler,), {"gce": gce})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    http.daemon_threads = True
    endpoint = f"http://127.0.0.1:{http.server_address[1]}"
    gce.base = f"{endpoint}/compute/v1"
    threading.Thread(target=http.serve_forever, daemon=True, name="gce-api").start()
    return http, endpoint


class _MetadataHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    values: dict[str, str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.headers.get("Metadata-Flavor") != "Google":
            # What the real one answers to a request without the header.
            self._send(403, "text/html", "Missing Metadata-Flavor:Google header.")
            return
        path = urllib.parse.urlsplit(self.path).path.removeprefix("/computeMetadata/v1/")
        if path not in self.values:
            self._send(404, "text/html", "Not Found")
            return
        self._send(200, "application/text", self.values[path])

    def _send(self, status: int, kind: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def metadata_server(
    project: str, zone: str, instance: str, instance_id: str
) -> tuple[ThreadingHTTPServer, str]:
    """A metadata server for one instance; (the server, its URL for `metadata_url`)."""
    values = {
        "project/project-id": project,
        "project/numeric-project-id": "123456789012",
        "instance/name": instance,
        "instance/id": instance_id,
        "instance/zone": f"projects/123456789012/zones/{zone}",
    }
    handler = type("MetadataHandler", (_MetadataHandler,), {"values": values})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True, name="gce-metadata").start()
    return http, f"http://127.0.0.1:{http.server_address[1]}"
