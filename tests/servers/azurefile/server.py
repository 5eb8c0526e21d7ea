"""A fake Azure Files REST service on 127.0.0.1 for the official SDK, unpatched.

Azurite has no Files service, so this serves the subset Orlop uses, the way Azure does:

* every request must carry a SharedKey signature, recomputed here from the raw request
  with the account key (string-to-sign as Azure documents it: verb, standard headers,
  canonicalized x-ms-* headers in the service's order, canonicalized resource and query);
  a wrong key is 403 AuthenticationFailed with Azure's XML body and x-ms-error-code;
* shares: create (quota, access tier, metadata), properties, set quota/tier, stats,
  delete, list; directories and files: create, properties, list, delete;
* answers in Azure's shapes: ETag, Last-Modified, x-ms-request-id, x-ms-version,
  XML errors (ShareAlreadyExists, ShareNotFound, InvalidHeaderValue, …), 202 on delete;
* a share is a real directory; with `enforce_quota` it is a tmpfs of the quota's size, so
  a client writing past the quota gets "disk full" as from Azure. `on_share` hooks let the
  test's samba serve each share over SMB as it appears and go when it is deleted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

GIB = 1024**3
SHARE_NAME = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")
METADATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
TIERS = ("TransactionOptimized", "Hot", "Cool", "Premium")
STANDARD_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


@dataclass
class Share:
    name: str
    quota: int  # GiB
    tier: str
    metadata: dict[str, str]
    path: Path
    etag: str = field(default_factory=lambda: f'"0x{uuid.uuid4().hex[:15].upper()}"')
    modified: float = field(default_factory=time.time)

    def touch(self) -> None:
        self.etag = f'"0x{uuid.uuid4().hex[:15].upper()}"'
        self.modified = time.time()


class AzureError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail


def string_to_sign(method: str, headers: dict[str, str], raw_path: str, account: str) -> str:
    """Azure's SharedKey string-to-sign for the Blob, Queue and File services (2009-09-19+)."""
    parts = [method]
    for name in STANDARD_HEADERS:
        value = headers.get(name, "")
        parts.append("" if name == "content-length" and value == "0" else value)
    canonical_headers = sorted(
        (name, value) for name, value in headers.items() if name.startswith("x-ms-")
    )
    # The service orders header names ignoring hyphens first (its culture-aware sort).
    canonical_headers.sort(key=lambda item: (item[0].replace("-", ""), item[0]))
    text = "\n".join(parts) + "\n"
    text += "".join(f"{name}:{value.strip()}\n" for name, value in canonical_headers)
    split = urlsplit(raw_path)
    text += f"/{account}{split.path}"
    query: dict[str, list[str]] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query.setdefault(name.lower(), []).append(value)
    for name in sorted(query):
        text += f"\n{name}:{','.join(sorted(query[name]))}"
    return text


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class AzureFilesServer:
    """`AzureFilesServer(root, account, key).start()`; `url` is the Files endpoint."""

    def __init__(
        self,
        root: str | Path,
        account: str,
        key: str,
        *,
        enforce_quota: bool = True,
        max_quota_gib: int = 102400,
        on_share_created: Callable[[str, Path], None] | None = None,
        on_share_deleted: Callable[[str], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.account = account
        self.key = key
        self.enforce_quota = enforce_quota
        self.max_quota_gib = max_quota_gib
        self.on_share_created = on_share_created
        self.on_share_deleted = on_share_deleted
        self.shares: dict[str, Share] = {}
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.latency = 0.0  # seconds each request waits before it is served (a slow service)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> AzureFilesServer:
        (self.root / "shares").mkdir(parents=True, exist_ok=True)
        handler = type("Handler", (_Handler,), {"service": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            for name in list(self.shares):
                self._drop(name)

    # share storage ----------------------------------------------------------------------
    def _make(self, name: str, quota: int, tier: str, metadata: dict[str, str]) -> Share:
        path = self.root / "shares" / name
        path.mkdir(mode=0o777)
        path.chmod(0o777)
        if self.enforce_quota:
            _run(["mount", "-t", "tmpfs", "-o", f"size={quota}g,mode=0777", "tmpfs", str(path)])
        share = Share(name, quota, tier, metadata, path)
        self.shares[name] = share
        if self.on_share_created is not None:
            self.on_share_created(name, path)
        return share

    def _resize(self, share: Share, quota: int) -> None:
        if self.enforce_quota:
            _run(["mount", "-o", f"remount,size={quota}g", str(share.path)])
        share.quota = quota
        share.touch()

    def _drop(self, name: str) -> None:
        share = self.shares.pop(name)
        if self.on_share_deleted is not None:
            self.on_share_deleted(name)
        if self.enforce_quota:
            _run(["umount", "--lazy", str(share.path)], check=False)
        shutil.rmtree(share.path, ignore_errors=True)

    def usage(self, share: Share) -> int:
        total = 0
        for directory, _dirs, files in os.walk(share.path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(directory, name)).st_size
        return total


def _run(args: list[str], check: bool = True) -> None:
    subprocess.run(args, check=check, capture_output=True, timeout=60)


class _Handler(BaseHTTPRequestHandler):
    service: AzureFilesServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # dispatch ---------------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        if self.service.latency:
            time.sleep(self.service.latency)
        self.request_id = str(uuid.uuid4())
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        service = self.service
        with service.lock:
            service.requests.append((method, self.path, headers))
        try:
            self._authenticate(method, headers)
            split = urlsplit(self.path)
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            parts = [unquote(p) for p in split.path.split("/") if p]
            with service.lock:
                status, extra, body = self._route(method, parts, query, headers)
        except AzureError as error:
            self._error(error)
            return
        self._reply(status, extra, body, head=method == "HEAD")

    def _authenticate(self, method: str, headers: dict[str, str]) -> None:
        service = self.service
        authorization = headers.get("authorization", "")
        if not authorization:
            raise AzureError(
                401,
                "NoAuthenticationInformation",
                "Server failed to authenticate the request. Please refer to the information "
                "in the www-authenticate header.",
            )
        match = re.fullmatch(r"SharedKey ([^:]+):(.+)", authorization)
        text = string_to_sign(method, headers, self.path, service.account)
        expected = sign(service.key, text)
        if (
            match is None
            or match.group(1) != service.account
            or not hmac.compare_digest(match.group(2), expected)
        ):
            raise AzureError(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of "
                "Authorization header is formed correctly including the signature.",
                f"The MAC signature found in the HTTP request '{match.group(2) if match else ''}'"
                " is not the same as any computed signature. Server used following string "
                f"to sign: '{text}'.",
            )
        stamp = headers.get("x-ms-date") or headers.get("date")
        try:
            age = abs(time.time() - parsedate_to_datetime(stamp or "").timestamp())
        except (TypeError, ValueError):
            age = float("inf")
        if age > 15 * 60:
            raise AzureError(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request.",
                "Request date header too old or missing.",
            )

    def _route(
        self, method: str, parts: list[str], query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        restype, comp = query.get("restype"), query.get("comp")
        if not parts:
            if method == "GET" and comp == "list":
                return self._list_shares(query)
            raise AzureError(
                400,
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid.",
            )
        share_name, path = parts[0], parts[1:]
        if not path and restype == "share":
            return self._share(method, share_name, comp, headers)
        share = self._existing(share_name)
        if restype == "directory":
            return self._directory(method, share, path, comp)
        if method == "DELETE" and path:
            return self._delete_file(share, path)
        if method in ("GET", "HEAD") and path:
            target = self._resolve(share, path)
            if not target.is_file():
                raise AzureError(404, "ResourceNotFound", "The specified resource does not exist.")
            return 200, {"Content-Length": str(target.stat().st_size), "x-ms-type": "File"}, b""
        raise AzureError(
            400, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb."
        )

    # shares -----------------------------------------------------------------------------
    def _share(
        self, method: str, name: str, comp: str | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        service = self.service
        if method == "PUT" and comp is None:
            if not SHARE_NAME.match(name):
                raise AzureError(
                    400,
                    "InvalidResourceName",
                    "The specifed resource name contains invalid characters.",
                )
            if name in service.shares:
                raise AzureError(409, "ShareAlreadyExists", "The specified share already exists.")
            quota = self._quota(headers.get("x-ms-share-quota", "102400"))
            tier = self._tier(headers.get("x-ms-access-tier", "TransactionOptimized"))
            metadata = {}
            for key, value in headers.items():
                if key.startswith("x-ms-meta-"):
                    meta = key[len("x-ms-meta-") :]
                    if not METADATA_NAME.match(meta):
                        raise AzureError(
                            400, "InvalidMetadata", "The metadata specified is invalid."
                        )
                    metadata[meta] = value
            share = service._make(name, quota, tier, metadata)
            return 201, self._stamp(share), b""
        share = self._existing(name)
        if method in ("GET", "HEAD") and comp is None:
            extra = self._stamp(share)
            extra["x-ms-share-quota"] = str(share.quota)
            extra["x-ms-access-tier"] = share.tier
            extra["x-ms-access-tier-change-time"] = formatdate(share.modified, usegmt=True)
            for key, value in share.metadata.items():
                extra[f"x-ms-meta-{key}"] = value
            return 200, extra, b""
        if method == "GET" and comp == "stats":
            body = (
                f"<ShareStats><ShareUsageBytes>{service.usage(share)}</ShareUsageBytes>"
                "</ShareStats>"
            )
            return 200, {"Content-Type": "application/xml"}, _xml(body)
        if method == "PUT" and comp == "properties":
            if "x-ms-share-quota" in headers:
                service._resize(share, self._quota(headers["x-ms-share-quota"]))
            if "x-ms-access-tier" in headers:
                share.tier = self._tier(headers["x-ms-access-tier"])
                share.touch()
            return 200, self._stamp(share), b""
        if method == "PUT" and comp == "metadata":
            share.metadata = {
                k[len("x-ms-meta-") :]: v for k, v in headers.items() if k.startswith("x-ms-meta-")
            }
            share.touch()
            return 200, self._stamp(share), b""
        if method == "DELETE" and comp is None:
            service._drop(name)
            return 202, {}, b""
        raise AzureError(
            400, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb."
        )

    def _quota(self, value: str) -> int:
        if not value.isdigit() or not 1 <= int(value) <= self.service.max_quota_gib:
            raise AzureError(
                400,
                "InvalidHeaderValue",
                "The value for one of the HTTP headers is not in the correct format.",
                "x-ms-share-quota",
            )
        return int(value)

    def _tier(self, value: str) -> str:
        if value not in TIERS:
            raise AzureError(
                400,
                "InvalidHeaderValue",
                "The value for one of the HTTP headers is not in the correct format.",
                "x-ms-access-tier",
            )
        return value

    def _existing(self, name: str) -> Share:
        share = self.service.shares.get(name)
        if share is None:
            raise AzureError(404, "ShareNotFound", "The specified share does not exist.")
        return share

    def _list_shares(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        prefix = query.get("prefix", "")
        include = query.get("include", "")
        entries = []
        for share in sorted(self.service.shares.values(), key=lambda s: s.name):
            if not share.name.startswith(prefix):
                continue
            metadata = ""
            if "metadata" in include:
                metadata = (
                    "<Metadata>"
                    + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in share.metadata.items())
                    + "</Metadata>"
                )
            entries.append(
                f"<Share><Name>{share.name}</Name><Properties>"
                f"<Last-Modified>{formatdate(share.modified, usegmt=True)}</Last-Modified>"
                f"<Etag>{escape(share.etag)}</Etag><Quota>{share.quota}</Quota>"
                f"<AccessTier>{share.tier}</AccessTier></Properties>{metadata}</Share>"
            )
        body = (
            f'<EnumerationResults ServiceEndpoint="{self.service.url}/">'
            f"<Prefix>{escape(prefix)}</Prefix><Shares>{''.join(entries)}</Shares>"
            "<NextMarker /></EnumerationResults>"
        )
        return 200, {"Content-Type": "application/xml"}, _xml(body)

    # directories and files --------------------------------------------------------------
    def _resolve(self, share: Share, path: list[str]) -> Path:
        if any(part in ("", ".", "..") or "\\" in part for part in path):
            raise AzureError(
                400,
                "InvalidResourceName",
                "The specifed resource name contains invalid characters.",
            )
        return share.path.joinpath(*path)

    def _directory(
        self, method: str, share: Share, path: list[str], comp: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        target = self._resolve(share, path)
        if method == "PUT" and comp is None:
            if not target.parent.is_dir():
                raise AzureError(404, "ParentNotFound", "The specified parent path does not exist.")
            if target.exists():
                raise AzureError(
                    409, "ResourceAlreadyExists", "The specified resource already exists."
                )
            target.mkdir(mode=0o777)
            return 201, self._stamp(share), b""
        if not target.is_dir():
            raise AzureError(404, "ResourceNotFound", "The specified resource does not exist.")
        if method in ("GET", "HEAD") and comp is None:
            return 200, self._stamp(share), b""
        if method == "GET" and comp == "list":
            entries = []
            for child in sorted(target.iterdir()):
                stat = child.lstat()
                stamp = (
                    f"<Last-Modified>{formatdate(stat.st_mtime, usegmt=True)}</Last-Modified>"
                    f'<Etag>"0x{stat.st_mtime_ns:X}"</Etag>'
                )
                if child.is_dir():
                    entries.append(
                        f"<Directory><Name>{escape(child.name)}</Name><Properties>{stamp}"
                        "</Properties><Attributes>Directory</Attributes></Directory>"
                    )
                else:
                    entries.append(
                        f"<File><Name>{escape(child.name)}</Name><Properties>"
                        f"<Content-Length>{stat.st_size}</Content-Length>{stamp}</Properties>"
                        "<Attributes>Archive</Attributes></File>"
                    )
            body = (
                f'<EnumerationResults ServiceEndpoint="{self.service.url}/" '
                f'ShareName="{share.name}" DirectoryPath="{escape("/".join(path))}">'
                f"<Entries>{''.join(entries)}</Entries><NextMarker /></EnumerationResults>"
            )
            return 200, {"Content-Type": "application/xml"}, _xml(body)
        if method == "DELETE" and comp is None:
            if not path:
                raise AzureError(
                    400, "InvalidResourceName", "The root directory cannot be deleted."
                )
            if any(target.iterdir()):
                raise AzureError(409, "DirectoryNotEmpty", "The specified directory is not empty.")
            target.rmdir()
            return 202, {}, b""
        raise AzureError(
            400, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb."
        )

    def _delete_file(self, share: Share, path: list[str]) -> tuple[int, dict[str, str], bytes]:
        target = self._resolve(share, path)
        if not target.is_file() and not target.is_symlink():
            raise AzureError(404, "ResourceNotFound", "The specified resource does not exist.")
        target.unlink()
        return 202, {}, b""

    # replies ----------------------------------------------------------------------------
    def _stamp(self, share: Share) -> dict[str, str]:
        return {"ETag": share.etag, "Last-Modified": formatdate(share.modified, usegmt=True)}

    def _reply(self, status: int, extra: dict[str, str], body: bytes, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Server", "Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0")
        self.send_header("x-ms-request-id", self.request_id)
        self.send_header("x-ms-version", self.headers.get("x-ms-version", "2025-11-05"))
        self.send_header("Date", formatdate(usegmt=True))
        for name, value in extra.items():
            if name != "Content-Length":
                self.send_header(name, value)
        length = extra.get("Content-Length", str(len(body))) if head else str(len(body))
        self.send_header("Content-Length", length)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _error(self, error: AzureError) -> None:
        message = (
            f"{error.message}\nRequestId:{self.request_id}\n"
            f"Time:{time.strftime('%Y-%m-%dT%H:%M:%S.0000000Z', time.gmtime())}"
        )
        detail = ""
        if error.code == "AuthenticationFailed" and error.detail:
            detail = (
                f"<AuthenticationErrorDetail>{escape(error.detail)}</AuthenticationErrorDetail>"
            )
        elif error.detail:
            detail = f"<HeaderName>{escape(error.detail)}</HeaderName>"
        body = _xml(
            f"<Error><Code>{error.code}</Code><Message>{escape(message)}</Message>{detail}</Error>"
        )
        head = self.command == "HEAD"
        self._reply(
            error.status,
            {"Content-Type": "application/xml", "x-ms-error-code": error.code},
            b"" if head else body,
        )


def _xml(body: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?>' + body).encode()
