"""The small part of Nova (and Keystone, and the metadata service) the Cinder tests need.

Nova cannot run here, so this server does what Nova's API and compute service do for a
volume attachment, against the REAL Cinder, through Cinder's attachments API:

* POST   /v2.1/servers/{id}/os-volume_attachments — check the server and the volume, reserve
  (attachment create without connector: Cinder refuses a volume that is not available),
  answer 200 with the device; then, asynchronously as nova-compute does, update the
  attachment with this host's connector, show the disk in the guest (the DevicePresenter's
  loop device at /dev/disk/by-id/virtio-<volume id[:20]>), and complete the attachment.
* DELETE /v2.1/servers/{id}/os-volume_attachments/{volume} — begin detaching, answer 202;
  then hide the disk and delete the Cinder attachment.
* GET the attachment list, one attachment, the server; version discovery; and
  /v2.1/os-server-external-events, where Cinder says it extended an in-use volume.

Tokens are checked as keystonemiddleware would (401 with Keystone's error body). The same
server answers as Keystone v3 (password login with a service catalog) under /identity and
as the metadata service under /metadata/<instance>/openstack/latest/meta_data.json.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.servers.cinder.nova_http import (
    MAX_MICROVERSION,
    UNAUTHORIZED,
    HttpError,
    fault,
    handler,
)
from tests.support.cloud.presenter import DevicePresenter

GIB = 1024**3


@dataclass
class Server:
    id: str
    name: str
    by_id_dir: Path
    zone: str = "nova"
    present: bool = True  # False: a broken guest where attached disks never show
    # volume ID → Nova's block device mapping: attachment ID, device, state
    bdms: dict[str, dict[str, Any]] = field(default_factory=dict)


class NovaServer:
    """Nova's os-volume_attachments over the real Cinder, Keystone v3 and the metadata API."""

    def __init__(self, presenter: DevicePresenter, compute_delay: float = 0.05) -> None:
        self.presenter = presenter
        # nova-compute's work happens after the answer, this long (or a (low, high) range
        # each attach and detach draws from); `latency`: seconds per Nova API request
        self.compute_delay: float | tuple[float, float] = compute_delay
        self.latency = 0.0
        self.cinder_url = ""  # http://127.0.0.1:<port>/v3/<project>, set once Cinder runs
        self.project = ""
        self.tokens: set[str] = set()
        self.users: dict[str, str] = {}  # Keystone: user name → password
        self.servers: dict[str, Server] = {}
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []  # (method, path), for assertions
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(self))
        self.httpd.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.root}/v2.1"
        self.identity_url = f"{self.root}/identity/v3"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> NovaServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def use_cinder(self, cinder_url: str, project: str, token: str) -> None:
        self.cinder_url, self.project = cinder_url, project
        self.tokens.add(token)

    def add_server(self, by_id_dir: Path, present: bool = True) -> Server:
        server = Server(str(uuid.uuid4()), f"orlop-test-{secrets.token_hex(3)}", by_id_dir)
        server.present = present
        with self.lock:
            self.servers[server.id] = server
        return server

    def metadata_url(self, server: Server) -> str:
        return f"{self.root}/metadata/{server.id}"

    # Cinder, as Nova calls it: with the user's token -------------------------------------
    def cinder(
        self, token: str, method: str, path: str, body: Any = None, microversion: str = "3.44"
    ) -> Any:
        request = urllib.request.Request(
            self.cinder_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "X-Auth-Token": token,
                "Content-Type": "application/json",
                "OpenStack-API-Version": f"volume {microversion}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                data = response.read()
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read() or b"{}")
            message = next(iter(answer.values()), {}).get("message", str(error))
            if error.code == 404:
                raise fault(404, f"Volume {path.split('/')[2]} could not be found.") from None
            raise fault(400 if error.code < 500 else 500, f"Invalid volume: {message}") from None
        return json.loads(data) if data else None

    # the compute API -----------------------------------------------------------------------
    def server(self, server_id: str) -> Server:
        with self.lock:
            if server_id not in self.servers:
                raise fault(404, f"Instance {server_id} could not be found.")
            return self.servers[server_id]

    def attach(self, token: str, server_id: str, body: dict[str, Any]) -> dict[str, Any]:
        server = self.server(server_id)
        volume_id = (body.get("volumeAttachment") or {}).get("volumeId")
        if not isinstance(volume_id, str):
            raise fault(400, "Invalid input for field/attribute volumeAttachment.")
        volume = self.cinder(token, "GET", f"/volumes/{volume_id}")["volume"]
        with self.lock:
            if volume_id in server.bdms:
                raise fault(400, f"Invalid volume: volume {volume_id} already attached")
            device = self.next_device(server)
            # Nova's API reserves (attachment create without a connector); Cinder refuses
            # a volume that is not available unless it is multiattach
            created = self.cinder(
                token,
                "POST",
                "/attachments",
                {"attachment": {"volume_uuid": volume_id, "instance_uuid": server_id}},
            )["attachment"]
            bdm = {"attachment_id": created["id"], "device": device, "state": "attaching"}
            bdm["bdm_uuid"] = str(uuid.uuid4())
            server.bdms[volume_id] = bdm
        threading.Thread(
            target=self.compute_attach, args=(token, server, volume, bdm), daemon=True
        ).start()
        return self.attachment_view(server, volume_id, bdm)

    def compute_attach(
        self, token: str, server: Server, volume: dict[str, Any], bdm: dict[str, Any]
    ) -> None:
        time.sleep(self._compute_pause())
        connector = {
            "host": server.name,
            "ip": "127.0.0.1",
            "initiator": f"iqn.1993-08.org.debian:01:{server.id[:12]}",
            "multipath": False,
            "platform": "x86_64",
            "os_type": "linux",
            "do_local_attach": False,
            "mountpoint": bdm["device"],
        }
        attachment = bdm["attachment_id"]
        try:
            self.cinder(
                token, "PUT", f"/attachments/{attachment}", {"attachment": {"connector": connector}}
            )
            if server.present:
                serial = volume["id"][:20]
                link = server.by_id_dir / f"virtio-{serial}"
                self.presenter.show(volume["id"], int(volume["size"]) * GIB, [link])
            self.cinder(token, "POST", f"/attachments/{attachment}/action", {"os-complete": None})
            bdm["state"] = "attached"
        except HttpError:  # as nova-compute: roll the reservation back
            with contextlib.suppress(HttpError):
                self.cinder(token, "DELETE", f"/attachments/{attachment}")
            with self.lock:
                server.bdms.pop(volume["id"], None)

    def _compute_pause(self) -> float:
        delay = self.compute_delay
        return random.uniform(*delay) if isinstance(delay, tuple) else delay

    def detach(self, token: str, server_id: str, volume_id: str) -> None:
        server = self.server(server_id)
        with self.lock:
            bdm = server.bdms.get(volume_id)
            if bdm is None:
                raise fault(404, f"volume_id not found: {volume_id}")
            if bdm["state"] != "attached":
                raise fault(
                    400, f"Invalid volume: Volume {volume_id} is {bdm['state']}, not in-use"
                )
            self.cinder(token, "POST", f"/volumes/{volume_id}/action", {"os-begin_detaching": None})
            bdm["state"] = "detaching"
        threading.Thread(
            target=self.compute_detach, args=(token, server, volume_id, bdm), daemon=True
        ).start()

    def compute_detach(
        self, token: str, server: Server, volume_id: str, bdm: dict[str, Any]
    ) -> None:
        time.sleep(self._compute_pause())
        self.presenter.hide(volume_id)
        # Real nova-compute deletes the Cinder attachment with a service token, which Cinder
        # trusts; without Keystone there is none, so Cinder asks Nova whether the server
        # still uses the attachment: the mapping goes first, and Cinder hears "not found".
        with self.lock:
            server.bdms.pop(volume_id, None)
        with contextlib.suppress(HttpError):
            self.cinder(token, "DELETE", f"/attachments/{bdm['attachment_id']}")

    def external_events(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        results = []
        for event in body.get("events", []):
            code = 404
            server = self.servers.get(event.get("server_uuid", ""))
            if server is not None and event.get("name") == "volume-extended":
                volume = self.cinder(token, "GET", f"/volumes/{event['tag']}")["volume"]
                if event["tag"] in self.presenter.devices:  # the guest sees the new size
                    self.presenter.device_for(event["tag"], int(volume["size"]) * GIB)
                code = 200
            results.append({**event, "code": code, "status": "completed"})
        return {"events": results}

    @staticmethod
    def next_device(server: Server) -> str:
        used = {bdm["device"] for bdm in server.bdms.values()}
        return next(f"/dev/vd{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"/dev/vd{c}" not in used)

    @staticmethod
    def attachment_view(server: Server, volume_id: str, bdm: dict[str, Any]) -> dict[str, Any]:
        return {
            "device": bdm["device"],
            "serverId": server.id,
            "volumeId": volume_id,
            "tag": None,
            "delete_on_termination": False,
            "attachment_id": bdm["attachment_id"],
            "bdm_uuid": bdm["bdm_uuid"],
        }

    def server_view(self, server: Server) -> dict[str, Any]:
        return {
            "id": server.id,
            "name": server.name,
            "status": "ACTIVE",
            "tenant_id": self.project,
            "OS-EXT-AZ:availability_zone": server.zone,
            "os-extended-volumes:volumes_attached": [
                {"id": vid, "delete_on_termination": False} for vid in server.bdms
            ],
            "links": [{"rel": "self", "href": f"{self.url}/servers/{server.id}"}],
        }

    # Keystone ----------------------------------------------------------------------------
    def login(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        identity = body.get("auth", {}).get("identity", {})
        scope = body.get("auth", {}).get("scope", {}).get("project", {})
        methods = identity.get("methods", [])
        if methods == ["token"]:  # a token exchanged for a (re)scoped one: Cinder does that
            if identity.get("token", {}).get("id") not in self.tokens:
                raise HttpError(401, UNAUTHORIZED)
            name = "admin"
        else:
            user = identity.get("password", {}).get("user", {})
            name, password = user.get("name"), user.get("password")
            if methods != ["password"] or self.users.get(name) != password:
                raise HttpError(401, UNAUTHORIZED)
            if scope.get("id") != self.project:
                raise HttpError(401, UNAUTHORIZED)
        token = f"admin:{self.project}"  # what the noauth Cinder takes as it is
        now = datetime.datetime.now(datetime.UTC)
        catalog = [
            self.catalog_entry("block-storage", "cinder", self.cinder_url),
            self.catalog_entry("volumev3", "cinderv3", self.cinder_url),
            self.catalog_entry("compute", "nova", self.url),
            self.catalog_entry("identity", "keystone", self.identity_url),
        ]
        domain = {"id": "default", "name": "Default"}
        return token, {
            "token": {
                "methods": ["password"],
                "issued_at": now.isoformat().replace("+00:00", "Z"),
                "expires_at": (now + datetime.timedelta(hours=1))
                .isoformat()
                .replace("+00:00", "Z"),
                "user": {"id": uuid.uuid4().hex, "name": name, "domain": domain},
                "project": {"id": self.project, "name": "orlop-test", "domain": domain},
                "roles": [{"id": uuid.uuid4().hex, "name": "member"}],
                "catalog": catalog,
            }
        }

    @staticmethod
    def catalog_entry(kind: str, name: str, url: str) -> dict[str, Any]:
        endpoint = {"id": uuid.uuid4().hex, "interface": "public", "url": url}
        endpoint |= {"region": "RegionOne", "region_id": "RegionOne"}
        return {"id": uuid.uuid4().hex, "type": kind, "name": name, "endpoints": [endpoint]}

    def version(self) -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": MAX_MICROVERSION,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.url}/"}],
        }

    def identity_version(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.identity_url}/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }
