"""HTTP for `nova.NovaServer`: routes, token checks, Nova's and Keystone's error bodies."""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.servers.cinder.nova import NovaServer

MAX_MICROVERSION = "2.96"
UNAUTHORIZED = {
    "error": {
        "code": 401,
        "title": "Unauthorized",
        "message": "The request you have made requires authentication.",
    }
}


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def fault(status: int, message: str) -> HttpError:
    key = {400: "badRequest", 404: "itemNotFound", 409: "conflictingRequest"}.get(status, "error")
    return HttpError(status, {key: {"code": status, "message": message}})


_ATTACHMENTS = re.compile(r"/v2\.1/servers/([^/]+)/os-volume_attachments(?:/([^/]+))?\Z")
_SERVER = re.compile(r"/v2\.1/servers/([^/]+)\Z")
_METADATA = re.compile(r"/metadata/([^/]+)/openstack/latest/meta_data\.json\Z")


def handler(nova: NovaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.serve("GET")

        def do_POST(self) -> None:
            self.serve("POST")

        def do_DELETE(self) -> None:
            self.serve("DELETE")

        def serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0].rstrip("/") or "/"
            nova.requests.append((method, path))
            headers: dict[str, str] = {}
            try:
                body = json.loads(raw) if raw else {}
                time.sleep(nova.latency / 2)
                status, answer = self.route(method, path, body, headers)
            except HttpError as error:
                status, answer = error.status, error.body
            except ValueError:
                status, answer = 400, fault(400, "Malformed request body").body
            time.sleep(nova.latency / 2)
            self.reply(status, answer, headers)

        def route(
            self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]
        ) -> tuple[int, Any]:
            if method == "GET" and (match := _METADATA.match(path)):
                server = nova.server(match.group(1))
                document = {"uuid": server.id, "name": server.name}
                return 200, document | {
                    "availability_zone": server.zone,
                    "project_id": nova.project,
                }
            if path == "/":
                return 300, {"versions": [nova.version()]}
            if path == "/v2.1" and method == "GET":
                return 200, {"version": nova.version()}
            if path in ("/identity", "/identity/v3") and method == "GET":
                version = nova.identity_version()
                if path == "/identity":
                    return 300, {"versions": {"values": [version]}}
                return 200, {"version": version}
            if path == "/identity/v3/auth/tokens" and method == "POST":
                token, answer = nova.login(body)
                headers["X-Subject-Token"] = token
                return 201, answer
            token = self.headers.get("X-Auth-Token", "")
            if token not in nova.tokens:
                raise HttpError(401, UNAUTHORIZED)
            return self.compute(method, path, body, token)

        def compute(
            self, method: str, path: str, body: dict[str, Any], token: str
        ) -> tuple[int, Any]:
            if path == "/v2.1/os-server-external-events" and method == "POST":
                return 200, nova.external_events(token, body)
            if (match := _SERVER.match(path)) and method == "GET":
                return 200, {"server": nova.server_view(nova.server(match.group(1)))}
            match = _ATTACHMENTS.match(path)
            if match is None:
                raise fault(404, f"The resource could not be found: {method} {path}")
            server_id, volume_id = match.groups()
            if method == "POST" and volume_id is None:
                return 200, {"volumeAttachment": nova.attach(token, server_id, body)}
            server = nova.server(server_id)
            if method == "GET" and volume_id is None:
                with nova.lock:
                    views = [nova.attachment_view(server, v, b) for v, b in server.bdms.items()]
                return 200, {"volumeAttachments": views}
            if method == "GET":
                with nova.lock:
                    if volume_id not in server.bdms:
                        raise fault(404, f"Volume {volume_id} is not attached to the instance")
                    view = nova.attachment_view(server, volume_id, server.bdms[volume_id])
                return 200, {"volumeAttachment": view}
            if method == "DELETE":
                nova.detach(token, server_id, volume_id)
                return 202, None
            raise HttpError(405, {"error": {"code": 405, "message": "Method not allowed"}})

        def reply(self, status: int, answer: Any, headers: dict[str, str]) -> None:
            data = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            asked = self.headers.get("OpenStack-API-Version", "").removeprefix("compute ").strip()
            version = asked if re.fullmatch(r"2\.\d+", asked) else "2.1"
            self.send_header("OpenStack-API-Version", f"compute {version}")
            self.send_header("X-OpenStack-Nova-API-Version", version)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
