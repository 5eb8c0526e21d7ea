"""A fake Dell PowerScale (OneFS) API over TLS for the official `isilon-sdk`, unpatched.

It serves the subset Orlop uses, with OneFS's rules and shapes (the SDK's models check
them when they read a response):

* TLS only, with a certificate from a CA made here (`ca_file` for the SDK);
* session login: POST /session/1/session answers 201 with cookies `isisessid` and
  `isicsrf`; every other request needs that session cookie, the X-CSRF-Token header equal
  to isicsrf, and an Origin header naming this server — else 401 / 403 with OneFS's
  {"errors": [{"code", "message"}]} body; a session ends after `timeout_inactive` seconds
  unused or `timeout_absolute` in all, or at DELETE (logout); `logins` and `logouts`
  count them;
* namespace API: directories under /ifs (PUT with x-isi-ifs-target-type: container,
  HEAD, DELETE ?recursive=true);
* platform API: directory quotas (hard threshold, usage), NFS exports, SMB shares and
  snapshots, with ids, 201/204/404/409 as OneFS answers. The platform version in the URL
  (/platform/15/…) is whatever the SDK module asks for.

A directory quota is enforced as OneFS does, by refusing writes past the hard threshold:
here the directory becomes a tmpfs of that size. `on_smb_share` hooks let the test's samba
serve each SMB share the API creates.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.support.tls import make_tls

PLATFORM = re.compile(r"/platform/\d+/(.+)")


class OneFsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class PowerScaleServer:
    """`PowerScaleServer(root, user, password).start()`; `url`, `ca_file`, `ifs`."""

    def __init__(
        self,
        root: Path,
        username: str,
        password: str,
        *,
        max_hard_threshold: int = 1024**5,
        on_smb_share: Callable[[str, Path], None] | None = None,
        on_smb_share_deleted: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.ifs = root / "ifs"
        self.username, self.password = username, password
        self.max_hard_threshold = max_hard_threshold
        self.on_smb_share, self.on_smb_share_deleted = on_smb_share, on_smb_share_deleted
        self.sessions: dict[str, str] = {}  # isisessid → isicsrf
        self.session_times: dict[str, tuple[float, float]] = {}  # isisessid → (made, last used)
        self.timeout_absolute, self.timeout_inactive = 14400, 900  # as OneFS's defaults
        self.quotas: dict[str, dict[str, Any]] = {}
        self.exports: dict[int, dict[str, Any]] = {}
        self.smb_shares: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.lock = threading.RLock()
        self.logins = 0
        self.logouts = 0
        self.latency = 0.0  # seconds each request waits before it is served (a slow cluster)
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> PowerScaleServer:
        self.ifs.mkdir(parents=True, exist_ok=True)
        (self.root / "snapshots").mkdir(exist_ok=True)
        self.ca_file, cert, key = make_tls(self.root)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        handler = type("Handler", (_Handler,), {"cluster": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            for name in list(self.smb_shares):
                if self.on_smb_share_deleted is not None:
                    self.on_smb_share_deleted(name)
            for quota in list(self.quotas.values()):
                _run(["umount", "--lazy", self.local(quota["path"])], check=False)
            self.quotas.clear()

    def end_sessions(self) -> None:
        """End every session, as a cluster restart does: the next request gets 401."""
        with self.lock:
            self.sessions.clear()
            self.session_times.clear()

    def local(self, ifs_path: str) -> str:
        """The directory on this host behind a OneFS path (/ifs/…)."""
        parts = [p for p in ifs_path.split("/") if p]
        if not parts or parts[0] != "ifs" or any(p in (".", "..") for p in parts):
            raise OneFsError(400, "AEC_BAD_REQUEST", f"Invalid path: {ifs_path}")
        return str(self.ifs.joinpath(*parts[1:]))

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def _run(args: list[str], check: bool = True) -> None:
    subprocess.run(args, check=check, capture_output=True, timeout=60)


def _usage(path: str) -> int:
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


class _Handler(BaseHTTPRequestHandler):
    cluster: PowerScaleServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        if self.cluster.latency:
            time.sleep(self.cluster.latency)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        path = unquote(split.path).rstrip("/") or "/"
        cluster = self.cluster
        try:
            body = json.loads(raw) if raw.strip() else {}
            if path == "/session/1/session":
                self._session(method, body)
                return
            self._authorise()
            with cluster.lock:
                if path.startswith("/namespace/"):
                    status, answer = self._namespace(method, path[len("/namespace") :], query)
                else:
                    match = PLATFORM.fullmatch(path)
                    if match is None:
                        raise OneFsError(404, "AEC_NOT_FOUND", f"Path not found: {path}")
                    status, answer = self._platform(method, match.group(1), query, body)
        except OneFsError as error:
            answer = {"errors": [{"code": error.code, "message": error.message}]}
            self._reply(error.status, answer, head=method == "HEAD")
            return
        except ValueError:
            self._reply(400, {"errors": [{"code": "AEC_BAD_REQUEST", "message": "bad JSON"}]})
            return
        self._reply(status, answer, head=method == "HEAD")

    # sessions ---------------------------------------------------------------------------
    def _session(self, method: str, body: dict[str, Any]) -> None:
        cluster = self.cluster
        if method == "DELETE":
            self._authorise()
            with cluster.lock:
                session = self._session_id()
                del cluster.sessions[session]
                del cluster.session_times[session]
                cluster.logouts += 1
            self._reply(204, None)
            return
        if method != "POST":
            raise OneFsError(405, "AEC_BAD_REQUEST", "Method not allowed")
        if body.get("username") != cluster.username or body.get("password") != cluster.password:
            self._reply(401, {"message": "Username or password is incorrect."})
            return
        session, csrf = secrets.token_hex(16), secrets.token_hex(16)
        with cluster.lock:
            cluster.sessions[session] = csrf
            cluster.session_times[session] = (time.monotonic(), time.monotonic())
            cluster.logins += 1
        answer = {
            "services": body.get("services", ["platform"]),
            "timeout_absolute": cluster.timeout_absolute,
            "timeout_inactive": cluster.timeout_inactive,
            "username": cluster.username,
        }
        cookies = [
            f"isisessid={session}; path=/; HttpOnly; Secure; SameSite=strict",
            f"isicsrf={csrf}; path=/; Secure; SameSite=strict",
        ]
        self._reply(201, answer, cookies=cookies)

    def _session_id(self) -> str:
        cookies = dict(
            part.strip().split("=", 1)
            for part in self.headers.get("Cookie", "").split(";")
            if "=" in part
        )
        return cookies.get("isisessid", "")

    def _authorise(self) -> None:
        cluster = self.cluster
        session = self._session_id()
        with cluster.lock:
            made, used = cluster.session_times.get(session, (0.0, 0.0))
            now = time.monotonic()
            if now - made > cluster.timeout_absolute or now - used > cluster.timeout_inactive:
                cluster.sessions.pop(session, None)  # ended, as OneFS ends sessions
                cluster.session_times.pop(session, None)
            csrf = cluster.sessions.get(session)
            if csrf is not None:
                cluster.session_times[session] = (made, now)
        if csrf is None:
            raise OneFsError(401, "AEC_UNAUTHORIZED", "Authorization required")
        if self.headers.get("X-CSRF-Token") != csrf:
            raise OneFsError(403, "AEC_FORBIDDEN", "CSRF token missing or incorrect")
        if self.headers.get("Origin") != self.cluster.url:
            raise OneFsError(403, "AEC_FORBIDDEN", "Origin header missing or not this cluster")

    # namespace --------------------------------------------------------------------------
    def _namespace(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        local = self.cluster.local(path)
        if method == "PUT":
            if self.headers.get("x-isi-ifs-target-type") != "container":
                raise OneFsError(400, "AEC_BAD_REQUEST", "Only containers are served here")
            if (
                not os.path.isdir(os.path.dirname(local))
                and query.get("recursive", "").lower() != "true"
            ):
                raise OneFsError(404, "AEC_NOT_FOUND", f"Parent of {path} does not exist")
            os.makedirs(local, mode=0o777, exist_ok=True)
            os.chmod(local, 0o777)
            return 200, None
        if not os.path.isdir(local):
            raise OneFsError(404, "AEC_NOT_FOUND", f"Path not found: {path}")
        if method == "HEAD":
            return 200, None
        if method == "GET":
            children = [{"name": name} for name in sorted(os.listdir(local))]
            return 200, {"children": children}
        if method == "DELETE":
            if any(q["path"] == path for q in self.cluster.quotas.values()):
                _run(["umount", "--lazy", local], check=False)
            if query.get("recursive", "").lower() == "true":
                shutil.rmtree(local)
            else:
                try:
                    os.rmdir(local)
                except OSError:
                    raise OneFsError(409, "AEC_CONFLICT", "Directory not empty") from None
            return 204, None
        raise OneFsError(405, "AEC_BAD_REQUEST", "Method not allowed")

    # platform ---------------------------------------------------------------------------
    def _platform(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        parts = path.split("/")
        resource = "/".join(parts[:3]) if parts[0] == "protocols" else "/".join(parts[:2])
        ident = parts[3] if parts[0] == "protocols" and len(parts) > 3 else None
        if parts[0] != "protocols" and len(parts) > 2:
            ident = parts[2]
        handler = {
            "quota/quotas": self._quotas,
            "protocols/nfs/exports": self._exports,
            "protocols/smb/shares": self._smb,
            "snapshot/snapshots": self._snapshots,
        }.get(resource)
        if handler is None:
            raise OneFsError(404, "AEC_NOT_FOUND", f"Path not found: /platform/{path}")
        return handler(method, ident, query, body)

    def _quotas(
        self, method: str, ident: str | None, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        cluster = self.cluster
        if method == "POST" and ident is None:
            for key in ("path", "type", "include_snapshots"):
                if key not in body:
                    raise OneFsError(400, "AEC_BAD_REQUEST", f"Field: {key} required")
            local = cluster.local(body["path"])
            if not os.path.isdir(local):
                raise OneFsError(404, "AEC_NOT_FOUND", f"Path {body['path']} does not exist")
            if any(
                q["path"] == body["path"] and q["type"] == body["type"]
                for q in cluster.quotas.values()
            ):
                raise OneFsError(409, "AEC_CONFLICT", "Quota already exists")
            hard = self._hard(body)
            if any(os.scandir(local)):
                raise OneFsError(400, "AEC_BAD_REQUEST", "this fake sets quotas on new directories")
            _run(["mount", "-t", "tmpfs", "-o", f"size={hard},mode=0777", "tmpfs", local])
            quota_id = secrets.token_hex(16)  # OneFS quota IDs are 32 characters
            cluster.quotas[quota_id] = {
                "id": quota_id,
                "path": body["path"],
                "type": body["type"],
                "include_snapshots": bool(body["include_snapshots"]),
                "enforced": bool(body.get("enforced", True)),
                "container": bool(body.get("container", False)),
                "description": str(body.get("description") or ""),
                "thresholds": {"hard": hard},
            }
            return 201, {"id": quota_id}
        if method == "GET" and ident is None:
            found = [
                self._quota_view(q)
                for q in cluster.quotas.values()
                if query.get("path") in (None, q["path"]) and query.get("type") in (None, q["type"])
            ]
            return 200, {"quotas": found, "resume": None}
        quota = cluster.quotas.get(ident or "")
        if quota is None:
            raise OneFsError(404, "AEC_NOT_FOUND", f"Quota {ident} not found")
        if method == "GET":
            return 200, {"quotas": [self._quota_view(quota)]}
        if method == "PUT":  # a partial update: only the fields given change
            if "thresholds" in body:
                hard = self._hard(body)
                _run(["mount", "-o", f"remount,size={hard}", cluster.local(quota["path"])])
                quota["thresholds"] = {"hard": hard}
            if "description" in body:
                quota["description"] = str(body["description"] or "")
            return 204, None
        if method == "DELETE":
            # Real OneFS keeps the data; this fake's tmpfs goes, so Orlop only deletes a
            # quota on its way to deleting the directory.
            _run(["umount", "--lazy", cluster.local(quota["path"])], check=False)
            del cluster.quotas[quota["id"]]
            return 204, None
        raise OneFsError(405, "AEC_BAD_REQUEST", "Method not allowed")

    def _hard(self, body: dict[str, Any]) -> int:
        hard = (body.get("thresholds") or {}).get("hard")
        if not isinstance(hard, int) or hard <= 0:
            raise OneFsError(400, "AEC_BAD_REQUEST", "Field: thresholds.hard must be > 0")
        if hard > self.cluster.max_hard_threshold:
            raise OneFsError(
                400,
                "AEC_BAD_REQUEST",
                f"Hard threshold {hard} exceeds the cluster's limit "
                f"{self.cluster.max_hard_threshold}",
            )
        return hard

    def _quota_view(self, quota: dict[str, Any]) -> dict[str, Any]:
        used = _usage(self.cluster.local(quota["path"]))
        hard = quota["thresholds"]["hard"]
        return {
            **quota,
            "linked": False,
            "notifications": "default",
            "ready": True,
            "thresholds_on": "fslogicalsize",
            "thresholds": {
                "hard": hard,
                "hard_exceeded": used >= hard,
                "advisory": None,
                "soft": None,
                "soft_grace": None,
            },
            "usage": {
                "applogical": used,
                "applogical_ready": True,
                "fslogical": used,
                "fslogical_ready": True,
                "fsphysical": used,
                "fsphysical_ready": True,
                "inodes": 1,
                "inodes_ready": True,
                "physical": used,
                "physical_data": used,
                "physical_data_ready": True,
                "physical_protection": 0,
                "physical_protection_ready": True,
                "physical_ready": True,
                "shadow_refs": 0,
                "shadow_refs_ready": True,
            },
        }

    def _exports(
        self, method: str, ident: str | None, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        cluster = self.cluster
        if method == "POST" and ident is None:
            paths = body.get("paths")
            if not paths:
                raise OneFsError(400, "AEC_BAD_REQUEST", "Field: paths required")
            for path in paths:
                if not os.path.isdir(cluster.local(path)):
                    raise OneFsError(400, "AEC_BAD_REQUEST", f"Path {path} does not exist")
            export_id = cluster.new_id()
            cluster.exports[export_id] = {"id": export_id, "zone": "System", **body}
            return 201, {"id": export_id}
        if method == "GET" and ident is None:
            found = [
                e for e in cluster.exports.values() if query.get("path") in (None, *e["paths"])
            ]
            return 200, {"exports": found, "total": len(found), "resume": None, "digest": "x"}
        export = cluster.exports.get(int(ident or 0))
        if export is None:
            raise OneFsError(404, "AEC_NOT_FOUND", f"Export {ident} not found")
        if method == "GET":
            return 200, {"exports": [export]}
        if method == "DELETE":
            del cluster.exports[export["id"]]
            return 204, None
        raise OneFsError(405, "AEC_BAD_REQUEST", "Method not allowed")

    def _smb(
        self, method: str, ident: str | None, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        cluster = self.cluster
        if method == "POST" and ident is None:
            name, path = body.get("name"), body.get("path")
            if not name or not path:
                raise OneFsError(400, "AEC_BAD_REQUEST", "Fields name and path required")
            if name.lower() in (n.lower() for n in cluster.smb_shares):
                raise OneFsError(409, "AEC_CONFLICT", f"Share {name} already exists")
            local = cluster.local(path)
            if not os.path.isdir(local):
                raise OneFsError(400, "AEC_BAD_REQUEST", f"Path {path} does not exist")
            cluster.smb_shares[name] = {"id": name, "zid": 1, **body}
            if cluster.on_smb_share is not None:
                cluster.on_smb_share(name, Path(local))
            return 201, {"id": name}
        if method == "GET" and ident is None:
            return 200, {"shares": list(cluster.smb_shares.values()), "resume": None}
        share = cluster.smb_shares.get(ident or "")
        if share is None:
            raise OneFsError(404, "AEC_NOT_FOUND", f"SMB share {ident} not found")
        if method == "GET":
            return 200, {"shares": [share]}
        if method == "DELETE":
            del cluster.smb_shares[share["id"]]
            if cluster.on_smb_share_deleted is not None:
                cluster.on_smb_share_deleted(share["id"])
            return 204, None
        raise OneFsError(405, "AEC_BAD_REQUEST", "Method not allowed")

    def _snapshots(
        self, method: str, ident: str | None, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        cluster = self.cluster
        if method == "POST" and ident is None:
            path = body.get("path")
            if not path or not os.path.isdir(cluster.local(path)):
                raise OneFsError(400, "AEC_BAD_REQUEST", f"Path {path} does not exist")
            name = body.get("name") or f"s{cluster.next_id + 1}"
            if any(s["name"] == name for s in cluster.snapshots.values()):
                raise OneFsError(409, "AEC_CONFLICT", f"Snapshot name {name} already in use")
            snapshot_id = cluster.new_id()
            copy = cluster.root / "snapshots" / str(snapshot_id)
            shutil.copytree(cluster.local(path), copy, symlinks=True)
            snapshot = {
                "id": snapshot_id, "name": name, "path": path, "created": int(time.time()),
                "expires": body.get("expires"), "has_locks": False, "pct_filesystem": 0.0,
                "pct_reserve": 0.0, "shadow_bytes": 0, "size": _usage(str(copy)),
                "state": "active", "alias": None, "schedule": None, "target_id": None,
                "target_name": None,
            }  # fmt: skip
            cluster.snapshots[snapshot_id] = snapshot
            return 201, snapshot
        if method == "GET" and ident is None:
            found = list(cluster.snapshots.values())
            return 200, {"snapshots": found, "total": len(found), "resume": None}
        snapshot = (
            cluster.snapshots.get(int(ident))
            if (ident or "").isdigit()
            else next((s for s in cluster.snapshots.values() if s["name"] == ident), None)
        )
        if snapshot is None:
            raise OneFsError(404, "AEC_NOT_FOUND", f"Snapshot {ident} not found")
        if method == "GET":
            return 200, {"snapshots": [snapshot]}
        if method == "DELETE":
            del cluster.snapshots[snapshot["id"]]
            shutil.rmtree(cluster.root / "snapshots" / str(snapshot["id"]), ignore_errors=True)
            return 204, None
        raise OneFsError(405, "AEC_BAD_REQUEST", "Method not allowed")

    # replies ----------------------------------------------------------------------------
    def _reply(
        self, status: int, body: Any, head: bool = False, cookies: list[str] | None = None
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Server", "Apache")
        self.send_header("Content-Type", "application/json")
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(0 if head else len(data)))
        self.end_headers()
        if data and not head:
            self.wfile.write(data)
