"""A stateful fake of DigitalOcean's API v2 (the Block Storage subset) and droplet metadata.

Volumes, volume actions, actions, volume snapshots, snapshots, tags and droplets, on
127.0.0.1, with bodies field for field as DigitalOcean's API reference has them (pydo's
generated operations show the same paths and bodies): a field the real API does not take is
refused (400), a missing required one too. Its quirks, kept:

* errors are `{"id": "unprocessable_entity", "message": …, "request_id": …}` with the status;
* every answer carries `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset`;
  `throttle(n)` makes the next n API requests answer 429 `too_many_requests`;
* attach, detach and resize are actions that stay `in-progress` for `action_delay` seconds
  (a number, or a `(low, high)` range drawn from for each action). The droplet enters the
  volume's `droplet_ids` only when the attach action completes and leaves it when the
  detach completes (DigitalOcean documents no earlier moment; its own tools wait on the
  action), and a volume attached, or being attached, to one droplet is refused to another
  with 422. The device appears on the droplet when the attach completes, and goes when the
  detach completes;
* every API request takes `latency` seconds more (a real API answers in tens of ms: the
  windows between two reads open as they would there);
* each droplet has its own metadata service under `/droplet/<id>` (`metadata_url` of that
  droplet): `/droplet/<id>/metadata/v1/id` and `/region`.

When an attach to a droplet that has a by-id directory completes, the shared
`DevicePresenter` shows a real loop device at `<by_id>/scsi-0DO_Volume_<name>`.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import random
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.cloud.images import copy_sparse
from tests.support.cloud.presenter import DevicePresenter

GIB = 1024**3
REGIONS = ("nyc1", "nyc3", "ams3", "fra1", "sfo3")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}\Z")
_TAG = re.compile(r"[A-Za-z0-9_:-]{1,255}\Z")
_RATE_LIMIT = 5000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _region(slug: str) -> dict[str, Any]:
    return {
        "name": slug.upper(),
        "slug": slug,
        "sizes": ["s-1vcpu-1gb"],
        "features": ["storage", "metadata"],
        "available": True,
    }


@dataclass
class Volume:
    id: str
    name: str
    region: str
    size: int  # GiB
    description: str = ""
    tags: list[str] = field(default_factory=list)
    droplet_ids: list[int] = field(default_factory=list)
    reserved_for: int | None = None  # an attach in progress
    created_at: str = field(default_factory=_now)
    filesystem_type: str = ""
    filesystem_label: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "region": _region(self.region),
            "droplet_ids": list(self.droplet_ids),
            "name": self.name,
            "description": self.description,
            "size_gigabytes": self.size,
            "created_at": self.created_at,
            "filesystem_type": self.filesystem_type,
            "filesystem_label": self.filesystem_label,
            "tags": list(self.tags),
        }


@dataclass
class Action:
    id: int
    type: str  # attach_volume, detach_volume, resize_volume
    volume_id: str
    region: str
    droplet_id: int | None = None
    size: int | None = None
    status: str = "in-progress"
    started_at: str = field(default_factory=_now)
    completed_at: str | None = None
    due: float = 0.0

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "type": self.type,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "resource_id": 0,
            "resource_type": "backend",
            "region": _region(self.region),
            "region_slug": self.region,
        }


class DoServer:
    """The fake API; `start()` serves it on a free port of 127.0.0.1."""

    def __init__(self, token: str, presenter: DevicePresenter | None = None) -> None:
        self.token = token
        self.presenter = presenter
        self.action_delay: float | tuple[float, float] = 0.2
        self.latency = 0.0
        self.volumes: dict[str, Volume] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.actions: dict[int, Action] = {}
        self.droplets: dict[int, dict[str, Any]] = {}
        self.by_id: dict[int, Path] = {}  # droplet → where its guest shows volumes
        self.tags: set[str] = set()
        self.requests: list[tuple[str, str, Any]] = []  # method, path, body (for assertions)
        self.lock = threading.RLock()
        self._ids = itertools.count(36_000_000)
        self._throttle = 0
        self._remaining = _RATE_LIMIT
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> DoServer:
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

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._tick, daemon=True, name="do-actions").start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def metadata_url(self, droplet_id: int) -> str:
        return f"{self.url}/droplet/{droplet_id}"

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # test controls -----------------------------------------------------------------------
    def add_droplet(self, region: str = "nyc1", by_id: Path | None = None) -> int:
        with self.lock:
            droplet_id = next(self._ids)
            self.droplets[droplet_id] = {
                "id": droplet_id,
                "name": f"droplet-{droplet_id}",
                "status": "active",
                "region": _region(region),
                "volume_ids": [],
                "created_at": _now(),
            }
            if by_id is not None:
                self.by_id[droplet_id] = by_id
            return droplet_id

    def hurry(self) -> None:
        """Let every action in progress complete now (tests that look at one in progress
        hold actions back with a long `action_delay`, then let them go)."""
        with self.lock:
            for action in self.actions.values():
                action.due = 0.0

    def throttle(self, count: int) -> None:
        """The next `count` API requests answer 429."""
        with self.lock:
            self._throttle = count

    def delete_volume(self, volume_id: str) -> None:
        """As a person in the control panel would (detached or not)."""
        with self.lock:
            volume = self.volumes.pop(volume_id)
            for droplet in volume.droplet_ids:
                self._droplet_volumes(droplet).remove(volume_id)
        if self.presenter is not None:
            self.presenter.forget(volume_id)

    # the HTTP side -----------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        if self.latency and not url.path.startswith("/droplet/"):
            time.sleep(self.latency)
        status, body = 200, None
        try:
            if url.path.startswith("/droplet/"):
                self._metadata(request, url.path)
                return
            body_in = json.loads(raw) if raw else None
            with self.lock:
                self.requests.append((method, url.path, body_in))
                self._check_auth(request)
                if self._throttle > 0:
                    self._throttle -= 1
                    self._remaining = 0
                    raise ApiError(429, "too_many_requests", "API Rate limit exceeded.")
                self._remaining = max(0, self._remaining - 1)
                status, body = self._route(method, url.path, query, body_in)
        except ApiError as error:
            status = error.status
            body = {"id": error.code, "message": error.message, "request_id": str(uuid.uuid4())}
        except json.JSONDecodeError:
            status, body = 400, {"id": "bad_request", "message": "malformed JSON body"}
        data = json.dumps(body).encode() if body is not None else b""
        request.send_response(status)
        if data:
            request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.send_header("ratelimit-limit", str(_RATE_LIMIT))
        request.send_header("ratelimit-remaining", str(self._remaining))
        request.send_header("ratelimit-reset", str(int(time.time()) + 60))
        if status == 429:
            request.send_header("retry-after", "1")
        request.end_headers()
        request.wfile.write(data)

    def _metadata(self, request: BaseHTTPRequestHandler, path: str) -> None:
        match = re.fullmatch(r"/droplet/(\d+)/metadata/v1/(id|region)", path)
        droplet = self.droplets.get(int(match.group(1))) if match else None
        if match is None or droplet is None:
            text, status = "not found", 404
        elif match.group(2) == "id":
            text, status = str(droplet["id"]), 200
        else:
            text, status = droplet["region"]["slug"], 200
        data = text.encode()
        request.send_response(status)
        request.send_header("Content-Type", "text/plain; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _check_auth(self, request: BaseHTTPRequestHandler) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "unauthorized", "Unable to authenticate you")

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts[:1] != ["v2"]:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        rest = parts[1:]
        routes: list[tuple[str, str, Any]] = [
            ("GET", "volumes", self._list_volumes),
            ("POST", "volumes", self._create_volume),
            ("GET", "volumes/snapshots/*", self._get_snapshot),
            ("DELETE", "volumes/snapshots/*", self._delete_snapshot),
            ("GET", "volumes/*", self._get_volume),
            ("DELETE", "volumes/*", self._delete_volume),
            ("POST", "volumes/*/actions", self._post_action),
            ("GET", "volumes/*/actions/*", self._get_volume_action),
            ("GET", "volumes/*/snapshots", self._list_volume_snapshots),
            ("POST", "volumes/*/snapshots", self._create_snapshot),
            ("GET", "actions/*", self._get_action),
            ("GET", "snapshots", self._list_snapshots),
            ("GET", "droplets/*", self._get_droplet),
            ("POST", "tags", self._create_tag),
            ("DELETE", "tags/*", self._delete_tag),
            ("POST", "tags/*/resources", self._tag_resources),
            ("DELETE", "tags/*/resources", self._untag_resources),
        ]
        for verb, pattern, handler in routes:
            shape = pattern.split("/")
            if (
                verb == method
                and len(shape) == len(rest)
                and all(s == "*" or s == r for s, r in zip(shape, rest, strict=True))
            ):
                args = [r for s, r in zip(shape, rest, strict=True) if s == "*"]
                result: tuple[int, Any] = handler(*args, query=query, body=body)
                return result
        raise ApiError(404, "not_found", "The resource you were accessing could not be found.")

    # volumes ---------------------------------------------------------------------------
    def _volume(self, volume_id: str) -> Volume:
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        return volume

    def _list_volumes(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        found = [
            v
            for v in self.volumes.values()
            if query.get("name") in (None, v.name) and query.get("region") in (None, v.region)
        ]
        return 200, _page(found, query, "volumes", "/v2/volumes", self.url)

    def _create_volume(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        _fields(
            body,
            required=("name", "region"),
            allowed=(
                "size_gigabytes",
                "description",
                "snapshot_id",
                "filesystem_type",
                "filesystem_label",
                "tags",
            ),
        )
        name, region = body["name"], body["region"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ApiError(
                422,
                "unprocessable_entity",
                "name must be lowercase and composed only of numbers, letters and '-', up to "
                "a limit of 64 characters, and must begin with a letter",
            )
        if region not in REGIONS:
            raise ApiError(422, "unprocessable_entity", f"invalid region: {region}")
        size = body.get("size_gigabytes")
        snapshot = None
        if body.get("snapshot_id") is not None:
            snapshot = self.snapshots.get(body["snapshot_id"])
            if snapshot is None:
                raise ApiError(404, "not_found", "snapshot not found")
            if region not in snapshot["regions"]:
                raise ApiError(422, "unprocessable_entity", "snapshot is not in that region")
            size = snapshot["min_disk_size"] if size is None else size
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 16384:
            raise ApiError(
                422, "unprocessable_entity", "size_gigabytes must be between 1 and 16384"
            )
        if snapshot is not None and size < snapshot["min_disk_size"]:
            raise ApiError(
                422, "unprocessable_entity", "volume size is smaller than the snapshot's"
            )
        for tag in body.get("tags") or []:
            if not isinstance(tag, str) or not _TAG.match(tag):
                raise ApiError(422, "unprocessable_entity", f"invalid tag name: {tag}")
        if any(v.name == name and v.region == region for v in self.volumes.values()):
            raise ApiError(409, "conflict", "already exists")
        volume = Volume(
            str(uuid.uuid4()),
            name,
            region,
            size,
            str(body.get("description") or ""),
            list(body.get("tags") or []),
            filesystem_type=str(body.get("filesystem_type") or ""),
        )
        self.tags.update(volume.tags)
        if snapshot is not None and self.presenter is not None:
            self.presenter.device_for(volume.id, size * GIB)
            self._copy_snapshot(snapshot["id"], volume.id)
        self.volumes[volume.id] = volume
        return 201, {"volume": volume.body()}

    def _get_volume(self, volume_id: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, {"volume": self._volume(volume_id).body()}

    def _delete_volume(self, volume_id: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        volume = self._volume(volume_id)
        if volume.droplet_ids or volume.reserved_for is not None:
            raise ApiError(409, "conflict", "attached volume cannot be deleted")
        del self.volumes[volume_id]
        if self.presenter is not None:
            self.presenter.forget(volume_id)
        return 204, None

    # actions ---------------------------------------------------------------------------
    def _post_action(self, volume_id: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        volume = self._volume(volume_id)
        kind = (body or {}).get("type")
        if kind in ("attach", "detach"):
            _fields(body, required=("type", "droplet_id"), allowed=("region", "tags"))
        elif kind == "resize":
            _fields(body, required=("type", "size_gigabytes"), allowed=("region",))
        else:
            raise ApiError(400, "bad_request", f"unknown action type {kind!r}")
        if body.get("region") not in (None, volume.region):
            raise ApiError(422, "unprocessable_entity", "the volume is not in that region")
        if any(a.volume_id == volume_id and a.status == "in-progress" for a in self._actions()):
            raise ApiError(422, "unprocessable_entity", "Droplet already has a pending event.")
        action = Action(next(self._ids), f"{kind}_volume", volume_id, volume.region)
        delay = self.action_delay
        action.due = time.monotonic() + (
            random.uniform(*delay) if isinstance(delay, tuple) else delay
        )
        if kind == "resize":
            size = body["size_gigabytes"]
            if not isinstance(size, int) or size <= volume.size or size > 16384:
                raise ApiError(
                    422, "unprocessable_entity", "volumes may only be resized upwards, to 16384"
                )
            action.size = size
        else:
            droplet_id = body["droplet_id"]
            if droplet_id not in self.droplets:
                raise ApiError(404, "not_found", f"droplet {droplet_id} not found")
            if self.droplets[droplet_id]["region"]["slug"] != volume.region:
                raise ApiError(422, "unprocessable_entity", "droplet is in another region")
            action.droplet_id = droplet_id
            if kind == "attach":
                holder = volume.droplet_ids[0] if volume.droplet_ids else volume.reserved_for
                if holder == droplet_id:
                    raise ApiError(
                        422, "unprocessable_entity", "volume is already attached to the droplet"
                    )
                if holder is not None:
                    raise ApiError(
                        422,
                        "unprocessable_entity",
                        "attaching volume to droplet: volume is attached to another droplet",
                    )
                volume.reserved_for = droplet_id
            elif droplet_id not in volume.droplet_ids:
                raise ApiError(422, "unprocessable_entity", "Attachment not found")
        self.actions[action.id] = action
        return 202, {"action": action.body()}

    def _actions(self) -> list[Action]:
        return list(self.actions.values())

    def _get_volume_action(
        self, volume_id: str, action_id: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        self._volume(volume_id)
        action = self.actions.get(int(action_id)) if action_id.isdigit() else None
        if action is None or action.volume_id != volume_id:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        return 200, {"action": action.body()}

    def _get_action(self, action_id: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        action = self.actions.get(int(action_id)) if action_id.isdigit() else None
        if action is None:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        return 200, {"action": action.body()}

    def _tick(self) -> None:
        while not self._stopping.wait(0.02):
            with self.lock:
                due = [
                    a
                    for a in self.actions.values()
                    if a.status == "in-progress" and a.due <= time.monotonic()
                ]
                for action in due:
                    self._complete(action)

    def _complete(self, action: Action) -> None:
        action.status, action.completed_at = "completed", _now()
        volume = self.volumes.get(action.volume_id)
        if volume is None:
            action.status = "errored"
            return
        if action.type == "resize_volume" and action.size:
            volume.size = action.size
            if self.presenter is not None and volume.droplet_ids:
                self.presenter.device_for(volume.id, volume.size * GIB)
        elif action.type == "attach_volume" and action.droplet_id is not None:
            volume.reserved_for = None
            volume.droplet_ids = [action.droplet_id]
            self._droplet_volumes(action.droplet_id).append(volume.id)
            by_id = self.by_id.get(action.droplet_id)
            if self.presenter is not None and by_id is not None:
                link = by_id / f"scsi-0DO_Volume_{volume.name}"
                self.presenter.show(volume.id, volume.size * GIB, [link])
        elif action.type == "detach_volume" and action.droplet_id in volume.droplet_ids:
            volume.droplet_ids.remove(action.droplet_id)
            with contextlib.suppress(ValueError):
                self._droplet_volumes(action.droplet_id).remove(volume.id)
            if self.presenter is not None:
                self.presenter.hide(volume.id)

    def _droplet_volumes(self, droplet_id: int) -> list[str]:
        volumes: list[str] = self.droplets[droplet_id]["volume_ids"]
        return volumes

    def _get_droplet(self, droplet_id: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        droplet = self.droplets.get(int(droplet_id)) if droplet_id.isdigit() else None
        if droplet is None:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        return 200, {"droplet": droplet}

    # snapshots ---------------------------------------------------------------------------
    def _create_snapshot(self, volume_id: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        volume = self._volume(volume_id)
        _fields(body, required=("name",), allowed=("tags",))
        for tag in body.get("tags") or []:
            if not isinstance(tag, str) or not _TAG.match(tag):
                raise ApiError(422, "unprocessable_entity", f"invalid tag name: {tag}")
        snapshot = {
            "id": str(uuid.uuid4()),
            "name": body["name"],
            "created_at": _now(),
            "regions": [volume.region],
            "resource_id": volume.id,
            "resource_type": "volume",
            "min_disk_size": volume.size,
            "size_gigabytes": 0.5,
            "tags": list(body.get("tags") or []),
        }
        self.tags.update(snapshot["tags"])
        self.snapshots[snapshot["id"]] = snapshot
        if self.presenter is not None and volume.id in self.presenter.devices:
            self._copy_snapshot(volume.id, snapshot["id"], to_snapshot=True)
        return 201, {"snapshot": snapshot}

    def _copy_snapshot(self, source: str, target: str, to_snapshot: bool = False) -> None:
        """Snapshot content: a sparse copy of the disk's image, restored into new volumes."""
        assert self.presenter is not None
        root = self.presenter.root
        if to_snapshot:
            src, dst = root / f"{_safe(source)}.img", root / f"snap-{_safe(target)}.img"
        else:
            src, dst = root / f"snap-{_safe(source)}.img", root / f"{_safe(target)}.img"
        if src.exists():
            copy_sparse(src, dst)

    def _list_volume_snapshots(
        self, volume_id: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        self._volume(volume_id)
        found = [s for s in self.snapshots.values() if s["resource_id"] == volume_id]
        return 200, _page(found, query, "snapshots", f"/v2/volumes/{volume_id}/snapshots", self.url)

    def _list_snapshots(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if query.get("resource_type") not in (None, "volume", "droplet"):
            raise ApiError(400, "bad_request", "resource_type must be droplet or volume")
        found = [
            s
            for s in self.snapshots.values()
            if query.get("resource_type") in (None, s["resource_type"])
        ]
        return 200, _page(found, query, "snapshots", "/v2/snapshots", self.url)

    def _get_snapshot(self, snapshot_id: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        snapshot = self.snapshots.get(snapshot_id)
        if snapshot is None:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        return 200, {"snapshot": snapshot}

    def _delete_snapshot(
        self, snapshot_id: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if self.snapshots.pop(snapshot_id, None) is None:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        if self.presenter is not None:
            (self.presenter.root / f"snap-{_safe(snapshot_id)}.img").unlink(missing_ok=True)
        return 204, None

    # tags ----------------------------------------------------------------------------------
    def _create_tag(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        _fields(body, required=("name",), allowed=())
        name = body["name"]
        if not isinstance(name, str) or not _TAG.match(name):
            raise ApiError(
                422,
                "unprocessable_entity",
                "tag names may contain letters, numbers, colons, dashes and underscores, "
                "up to 255 characters",
            )
        self.tags.add(name)
        return 201, {"tag": {"name": name, "resources": {"count": 0}}}

    def _delete_tag(self, tag: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if tag not in self.tags:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        self.tags.discard(tag)
        for volume in self.volumes.values():
            if tag in volume.tags:
                volume.tags.remove(tag)
        for snapshot in self.snapshots.values():
            if tag in snapshot["tags"]:
                snapshot["tags"].remove(tag)
        return 204, None

    def _tag_resources(self, tag: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        for resource in self._resources(tag, body):
            if tag not in resource:
                resource.append(tag)
        return 204, None

    def _untag_resources(self, tag: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        for resource in self._resources(tag, body):
            if tag in resource:
                resource.remove(tag)
        return 204, None

    def _resources(self, tag: str, body: Any) -> list[list[str]]:
        if tag not in self.tags:
            raise ApiError(404, "not_found", "The resource you were accessing could not be found.")
        _fields(body, required=("resources",), allowed=())
        found = []
        for item in body["resources"]:
            _fields(item, required=("resource_id", "resource_type"), allowed=())
            kind, rid = item["resource_type"], str(item["resource_id"])
            if kind == "volume" and rid in self.volumes:
                found.append(self.volumes[rid].tags)
            elif kind == "volume_snapshot" and rid in self.snapshots:
                found.append(self.snapshots[rid]["tags"])
            else:
                raise ApiError(404, "not_found", f"{kind} {rid} not found")
        return found


def _fields(body: Any, required: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the request body must be a JSON object")
    missing = [key for key in required if key not in body]
    unknown = sorted(set(body) - set(required) - set(allowed))
    if missing:
        raise ApiError(422, "unprocessable_entity", f"missing field(s): {', '.join(missing)}")
    if unknown:
        raise ApiError(400, "bad_request", f"unknown field(s): {', '.join(unknown)}")


def _page(items: list[Any], query: dict[str, str], key: str, path: str, url: str) -> Any:
    per_page = int(query.get("per_page", "20"))
    page = int(query.get("page", "1"))
    if not 1 <= per_page <= 200 or page < 1:
        raise ApiError(400, "bad_request", "per_page must be 1 to 200, page at least 1")
    chunk = items[(page - 1) * per_page : page * per_page]
    bodies = [item.body() if isinstance(item, Volume) else item for item in chunk]
    pages: dict[str, str] = {}
    if page * per_page < len(items):
        pages["next"] = f"{url}{path}?page={page + 1}&per_page={per_page}"
        pages["last"] = f"{url}{path}?page={-(-len(items) // per_page)}&per_page={per_page}"
    return {key: bodies, "links": {"pages": pages}, "meta": {"total": len(items)}}


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key) or "disk"
