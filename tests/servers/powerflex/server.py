"""A stateful fake of a Dell PowerFlex gateway (REST API 3.x and 4.x) on 127.0.0.1, over HTTPS.

It speaks what PyPowerFlex sends, per Dell's PowerFlex REST API reference: `/api/types/<T>/
instances`, `/api/instances/<T>::<id>[/action/<action>]`, numbers and booleans as strings in
request bodies, the gateway's error body `{"message": …, "httpStatusCode": 500, "errorCode":
…}` (PowerFlex answers 500 even for a volume that does not exist). Authentication:

* API 3.x: `GET /api/login` with Basic user:password answers a token; later requests use
  Basic user:token; `GET /api/logout` ends the token;
* API 4.x: `POST /rest/auth/login` (JSON user and password) answers access and refresh
  tokens; requests carry `Authorization: Bearer`; `POST /rest/auth/logout` ends them. (The
  `/api/login` + `/api/version` pair stays, as on a real 4.x gateway: clients ask the version
  first.)

Mapping is synchronous on the gateway (`mappedSdcInfo` changes in the request), but the
device appears on the SDC's host `device_delay` seconds later, as the SDC driver learns of
it; every request takes `latency` seconds, half before the state is read, half after.

A token lasts `token_lifetime` seconds (None: for ever) and is refused with 401 after it,
as a gateway ends a session; `logins` counts the logins of each kind, `logouts` the
logouts, and `tokens` holds the sessions still open (what a client left behind).

The certificate is signed by a CA made for the test session (`Tls`). When a volume is mapped
to an SDC that has a by-id directory, the shared `DevicePresenter` shows a real loop device
at `<by_id>/emc-vol-<system id>-<volume id>`.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.cloud.images import copy_sparse
from tests.support.cloud.presenter import DevicePresenter
from tests.support.tls import make_tls

GIB = 1024**3
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,31}\Z")


class GatewayError(Exception):
    def __init__(self, message: str, code: int = 0, status: int = 500) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


@dataclass
class Tls:
    """A CA and a server certificate for 127.0.0.1, as files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def make(cls, directory: Path) -> Tls:
        return cls(*make_tls(directory, "orlop test PowerFlex"))


class PowerFlexGateway:
    """The fake gateway; `start()` serves it on a free port of 127.0.0.1."""

    def __init__(
        self,
        tls: Tls,
        password: str,
        api_version: str = "3.6",
        username: str = "admin",
        presenter: DevicePresenter | None = None,
    ) -> None:
        self.tls, self.password, self.username = tls, password, username
        self.api_version = api_version
        self.presenter = presenter
        self.system_id = secrets.token_hex(8)
        self.domains = [
            {
                "id": secrets.token_hex(8),
                "name": "pd1",
                "systemId": self.system_id,
                "protectionDomainState": "Active",
            }
        ]
        self.pools = [
            {
                "id": secrets.token_hex(8),
                "name": name,
                "mediaType": "SSD",
                "protectionDomainId": self.domains[0]["id"],
            }
            for name in ("sp-ssd", "sp-hdd")
        ]
        self.sdcs: dict[str, dict[str, Any]] = {}
        self.by_id: dict[str, Path] = {}  # SDC id → where its host shows volumes
        self.volumes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, float] = {}  # 3.x tokens and 4.x access tokens → expiry
        self.token_lifetime: float | None = None
        self.logins = {"api": 0, "rest": 0}
        self.logouts = 0
        self.device_delay = 0.0  # seconds from a mapping to its device on the SDC
        self.latency = 0.0  # seconds per request
        self.lock = threading.RLock()
        self._vtrees = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> PowerFlexGateway:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out as two writes: without this, Nagle's algorithm
                # and the client's delayed ACK hold the second one back 40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # test controls ---------------------------------------------------------------------
    def add_sdc(self, by_id: Path | None = None) -> tuple[str, str]:
        """A host with an SDC: (SDC id, SDC GUID)."""
        with self.lock:
            sdc_id = secrets.token_hex(8)
            guid = "-".join(secrets.token_hex(n).upper() for n in (4, 2, 2, 2, 6))
            self.sdcs[sdc_id] = {
                "id": sdc_id,
                "name": f"sdc-{sdc_id[:6]}",
                "sdcGuid": guid,
                "sdcIp": f"10.0.0.{len(self.sdcs) + 10}",
                "systemId": self.system_id,
                "mdmConnectionState": "Connected",
                "sdcApproved": True,
            }
            if by_id is not None:
                self.by_id[sdc_id] = by_id
            return sdc_id, guid

    def delete_volume(self, volume_id: str) -> None:
        with self.lock:
            self.volumes.pop(volume_id)
        if self.presenter is not None:
            self.presenter.forget(volume_id)

    # HTTP --------------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlsplit(request.path).path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
            time.sleep(self.latency / 2)
            with self.lock:
                status, answer = self._route(request, method, path, body)
        except GatewayError as error:
            status = error.status
            answer = {"message": error.message, "httpStatusCode": status, "errorCode": error.code}
        except (ValueError, KeyError, TypeError) as error:
            status = 400
            answer = {"message": f"Bad request: {error}", "httpStatusCode": 400, "errorCode": 0}
        data = b"" if answer is None else json.dumps(answer).encode()
        time.sleep(self.latency / 2)
        request.send_response(status)
        request.send_header("Content-Type", "application/json;charset=UTF-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _basic(self, request: BaseHTTPRequestHandler) -> tuple[str, str] | None:
        header = request.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return None
        user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return user, secret

    def expire_tokens(self) -> None:
        """End every session now, as the gateway does when a token's lifetime is over."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def _issue(self, token: str) -> None:
        lifetime = self.token_lifetime
        self.tokens[token] = time.monotonic() + lifetime if lifetime else float("inf")

    def _live(self, token: str) -> bool:
        """A token this gateway issued and has not ended; an expired one is ended now."""
        expiry = self.tokens.get(token)
        if expiry is not None and expiry <= time.monotonic():
            del self.tokens[token]
        return expiry is not None and expiry > time.monotonic()

    def _authorised(self, request: BaseHTTPRequestHandler, version_call: bool) -> None:
        """3.x: Basic user:token. 4.x: a bearer token, except that `/api/version` (which a
        client asks before it knows which login to use) takes the 3.x form as well."""
        header = request.headers.get("Authorization") or ""
        bearer = header.startswith("Bearer ") and self._live(header[7:])
        if bearer and self.api_version >= "4":
            return
        basic = self._basic(request)
        known = basic is not None and basic[0] == self.username and self._live(basic[1])
        if known and (self.api_version < "4" or version_call):
            return
        raise GatewayError("Unauthorized", 0, 401)

    def _route(
        self, request: BaseHTTPRequestHandler, method: str, path: str, body: Any
    ) -> tuple[int, Any]:
        if path == "/api/login" and method == "GET":
            basic = self._basic(request)
            if basic != (self.username, self.password):
                raise GatewayError("Unauthorized", 0, 401)
            self.logins["api"] += 1
            token = base64.b64encode(secrets.token_bytes(24)).decode()
            self._issue(token)
            return 200, token
        if path == "/rest/auth/login" and method == "POST":
            if self.api_version < "4":
                raise GatewayError("Not found", 0, 404)
            if body.get("username") != self.username or body.get("password") != self.password:
                raise GatewayError("Unauthorized", 0, 401)
            self.logins["rest"] += 1
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            self._issue(access)
            return 200, {
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": 300,
                "scope": "openid profile email",
            }
        if path == "/rest/auth/logout" and method == "POST":
            self._authorised(request, version_call=False)
            header = request.headers.get("Authorization") or ""
            self.tokens.pop(header[7:], None)
            self.logouts += 1
            return 204, None
        if path == "/api/logout":
            self._authorised(request, version_call=True)
            basic = self._basic(request)
            if basic:
                self.tokens.pop(basic[1], None)
                self.logouts += 1
            return 200, ""
        if path == "/api/version":
            self._authorised(request, version_call=True)
            return 200, self.api_version
        self._authorised(request, version_call=False)
        return self._entities(method, path, body)

    def _entities(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        listing = re.fullmatch(r"/api/types/(\w+)/instances", path)
        if listing and method == "GET":
            return 200, self._list(listing.group(1))
        if listing and method == "POST" and listing.group(1) == "Volume":
            return 200, self._create_volume(body)
        one = re.fullmatch(r"/api/instances/(\w+)::([0-9a-f]+)(?:/action/(\w+))?", path)
        if one is None:
            raise GatewayError(f"Unknown resource {path}", 0, 404)
        kind, ident, action = one.groups()
        if action is None and method == "GET":
            return 200, self._get(kind, ident)
        if action is not None and method == "POST":
            if kind == "Volume":
                return 200, self._volume_action(ident, action, body)
            if kind == "System" and action == "snapshotVolumes" and ident == self.system_id:
                return 200, self._snapshot(body)
        raise GatewayError(f"Unknown action {action} on {kind}", 0, 400)

    def _list(self, kind: str) -> list[dict[str, Any]]:
        table: dict[str, list[dict[str, Any]]] = {
            "System": [
                {
                    "id": self.system_id,
                    "name": "pfsys",
                    "systemVersionName": f"DellEMC PowerFlex Version: R{self.api_version}",
                }
            ],
            "ProtectionDomain": self.domains,
            "StoragePool": self.pools,
            "Sdc": list(self.sdcs.values()),
            "Volume": list(self.volumes.values()),
        }
        if kind not in table:
            raise GatewayError(f"Unknown type {kind}", 0, 404)
        return json.loads(json.dumps(table[kind]))  # type: ignore[no-any-return]

    def _get(self, kind: str, ident: str) -> dict[str, Any]:
        for item in self._list(kind):
            if item["id"] == ident:
                return item
        raise GatewayError(f"Could not find the {kind.lower()}", 79 if kind == "Volume" else 80)

    # volumes ---------------------------------------------------------------------------
    def _volume(self, ident: str) -> dict[str, Any]:
        volume = self.volumes.get(ident)
        if volume is None:
            raise GatewayError("Could not find the volume", 79)
        return volume

    def _create_volume(self, body: dict[str, Any]) -> dict[str, str]:
        _strings(body, "volumeSizeInGb")
        allowed = {
            "storagePoolId",
            "volumeSizeInGb",
            "name",
            "volumeType",
            "useRmcache",
            "compressionMethod",
            "volumeClass",
        }
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise GatewayError(f"Unknown field(s) {', '.join(unknown)}", 0, 400)
        if body["storagePoolId"] not in {p["id"] for p in self.pools}:
            raise GatewayError("Could not find the Storage Pool", 94)
        name = body.get("name")
        if name is not None:
            self._check_name(name)
        if body.get("volumeType", "ThinProvisioned") not in ("ThinProvisioned", "ThickProvisioned"):
            raise GatewayError("Invalid volume type", 0, 400)
        gib = int(body["volumeSizeInGb"])
        if gib < 1:
            raise GatewayError("Volume size must be positive", 0, 400)
        gib = -(-gib // 8) * 8  # PowerFlex allocates in 8 GiB steps: it rounds up
        ident = secrets.token_hex(8)
        self.volumes[ident] = {
            "id": ident,
            "name": name or f"vol{ident[:6]}",
            "sizeInKb": gib * 1024 * 1024,
            "storagePoolId": body["storagePoolId"],
            "volumeType": body.get("volumeType", "ThinProvisioned"),
            "ancestorVolumeId": None,
            "vtreeId": f"{next(self._vtrees):016x}",
            "mappedSdcInfo": None,
            "creationTime": int(time.time()),
            "accessModeLimit": "ReadWrite",
            "links": [{"rel": "self", "href": f"/api/instances/Volume::{ident}"}],
        }
        return {"id": ident}

    def _check_name(self, name: Any) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise GatewayError(
                "Name must be at most 31 characters: letters, digits, '_', '-' and '.'", 0, 400
            )
        if any(v["name"] == name for v in self.volumes.values()):
            raise GatewayError("Volume name already in use", 6)

    def _volume_action(self, ident: str, action: str, body: dict[str, Any]) -> Any:
        volume = self._volume(ident)
        mapped = volume["mappedSdcInfo"] or []
        if action == "addMappedSdc":
            _strings(body, "allowMultipleMappings")
            sdc = self.sdcs.get(body.get("sdcId", ""))
            if sdc is None:
                raise GatewayError("Could not find the SDC", 80)
            if any(m["sdcId"] == sdc["id"] for m in mapped):
                raise GatewayError("The volume is already mapped to this SDC", 151)
            if mapped and body.get("allowMultipleMappings") != "True":
                raise GatewayError(
                    "Volume already mapped to another SDC; multiple mappings are not allowed",
                    153,
                )
            volume["mappedSdcInfo"] = [
                *mapped,
                {
                    "sdcId": sdc["id"],
                    "sdcIp": sdc["sdcIp"],
                    "sdcName": sdc["name"],
                    "accessMode": "ReadWrite",
                    "limitIops": 0,
                    "limitBwInMbps": 0,
                },
            ]
            if self.device_delay > 0:
                later = threading.Timer(
                    self.device_delay, self._present_if_mapped, (volume["id"], sdc["id"])
                )
                later.daemon = True
                later.start()
            else:
                self._present(volume)
            return {}
        if action == "removeMappedSdc":
            sdc_id = body.get("sdcId")
            if not any(m["sdcId"] == sdc_id for m in mapped):
                raise GatewayError("The volume is not mapped to the SDC", 152)
            volume["mappedSdcInfo"] = [m for m in mapped if m["sdcId"] != sdc_id] or None
            if self.presenter is not None:
                self.presenter.hide(ident)
            return {}
        if action == "setVolumeSize":
            _strings(body, "sizeInGB")
            gib = -(-int(body["sizeInGB"]) // 8) * 8
            if gib * 1024 * 1024 < volume["sizeInKb"]:
                raise GatewayError("Volume size cannot be decreased", 0, 400)
            volume["sizeInKb"] = gib * 1024 * 1024
            if self.presenter is not None and volume["mappedSdcInfo"]:
                self.presenter.device_for(ident, gib * GIB)
            return {}
        if action == "setVolumeName":
            self._check_name(body.get("newName"))
            volume["name"] = body["newName"]
            return {}
        if action == "removeVolume":
            if body.get("removeMode") not in ("ONLY_ME", "INCLUDING_DESCENDANTS"):
                raise GatewayError("Invalid remove mode", 0, 400)
            if mapped:
                raise GatewayError("The volume is mapped to an SDC: unmap it first", 99)
            del self.volumes[ident]
            if self.presenter is not None:
                self.presenter.forget(ident)
            return {}
        raise GatewayError(f"Unknown action {action}", 0, 400)

    def _present_if_mapped(self, volume_id: str, sdc_id: str) -> None:
        with self.lock:
            volume = self.volumes.get(volume_id)
            if volume and any(m["sdcId"] == sdc_id for m in volume["mappedSdcInfo"] or []):
                self._present(volume)

    def _present(self, volume: dict[str, Any]) -> None:
        if self.presenter is None:
            return
        for mapping in volume["mappedSdcInfo"] or []:
            by_id = self.by_id.get(mapping["sdcId"])
            if by_id is not None:
                link = by_id / f"emc-vol-{self.system_id}-{volume['id']}"
                self.presenter.show(volume["id"], volume["sizeInKb"] * 1024, [link])

    def _snapshot(self, body: dict[str, Any]) -> dict[str, Any]:
        made = []
        for definition in body["snapshotDefs"]:
            source = self._volume(definition["volumeId"])
            self._check_name(definition["snapshotName"])
            ident = secrets.token_hex(8)
            self.volumes[ident] = {
                **json.loads(json.dumps(source)),
                "id": ident,
                "name": definition["snapshotName"],
                "volumeType": "Snapshot",
                "ancestorVolumeId": source["id"],
                "mappedSdcInfo": None,
                "creationTime": int(time.time()),
                "links": [{"rel": "self", "href": f"/api/instances/Volume::{ident}"}],
            }
            made.append(ident)
            if self.presenter is not None:
                self._copy(source["id"], ident, source["sizeInKb"] * 1024)
        return {"volumeIdList": made, "snapshotGroupId": secrets.token_hex(8)}

    def _copy(self, source: str, target: str, size: int) -> None:
        """A snapshot's content: a sparse copy of its source's image."""
        assert self.presenter is not None
        if source not in self.presenter.devices:
            return
        self.presenter.device_for(target, size)
        root = self.presenter.root
        copy_sparse(root / f"{_safe(source)}.img", root / f"{_safe(target)}.img")


def _strings(body: dict[str, Any], *keys: str) -> None:
    """PowerFlex takes numbers and booleans as strings (as PyPowerFlex sends them)."""
    for key in keys:
        if key in body and not isinstance(body[key], str):
            raise GatewayError(f"{key} must be a string", 0, 400)


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key) or "disk"
