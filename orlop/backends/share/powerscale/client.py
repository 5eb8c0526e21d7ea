"""The PowerScale client: OneFS through the official `isilon-sdk` (module v9_5_0, OneFS 9.5+).

Every error becomes a BackendError / NotFound / Conflict naming the path and OneFS's own
message, never the password. One session per driver, https only (`SessionClient`): log
in once (POST /session/1/session; cookies isisessid and isicsrf, then X-CSRF-Token and
Origin on every call), again only when refused or expired (`timeout_absolute`,
`timeout_inactive` from its answer), log out at shutdown — the SDK's own ApiClient logs
in again after 15 s without a request and never logs out, so logins would pile up on the
cluster. A 401 for a session thought alive makes `OneFs` `forget()` it and try once more.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import isilon_sdk.v9_5_0 as isi  # type: ignore[import-untyped]
import urllib3
from isilon_sdk.v9_5_0.rest import ApiException  # type: ignore[import-untyped]

from orlop.core.model import BackendError, Conflict, NotFound

log = logging.getLogger(__name__)
T = TypeVar("T")
SESSION_PATH = "/session/1/session"
MARGIN_SECONDS = 5.0  # renew this long before the cluster would end the session


class SessionClient(isi.ApiClient):  # type: ignore[misc]  # the SDK is untyped
    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)
        self._session_lock = threading.Lock()
        self._cookie: str | None = None
        self._csrf: str | None = None
        self._ends_at = 0.0  # timeout_absolute
        self._idle_ends_at = 0.0  # timeout_inactive, from the last request
        self._inactive = 0.0
        self.logins = 0  # sessions opened (tests and the log count them)
        self._closed = False  # logged out at shutdown: a call still running must not log in
        self.login_timeout = 20.0  # set by OneFs to the volume's timeout

    # the SDK calls this before every request ---------------------------------------------
    def update_params_for_auth(self, headers: dict[str, str], querys: Any, auth: Any) -> None:
        with self._session_lock:
            if self._closed:
                raise RuntimeError(f"the session with {self.configuration.host} ended at shutdown")
            now = time.monotonic()
            if self._cookie is None or now >= min(self._ends_at, self._idle_ends_at):
                self._login(now)
            self._idle_ends_at = now + self._inactive
            assert self._cookie is not None
            headers["Cookie"] = self._cookie
            if self._csrf:
                headers["Origin"] = self.configuration.host
                headers["X-CSRF-Token"] = self._csrf

    def forget(self) -> None:
        """The cluster refused the session: the next request logs in again."""
        with self._session_lock:
            self._cookie = None

    def logout(self) -> None:
        """End the session on the cluster (DELETE /session/1/session); errors only logged."""
        with self._session_lock:
            cookie, csrf, self._cookie = self._cookie, self._csrf, None
            self._closed = True
        if cookie is None:
            return
        headers = {"Cookie": cookie}
        if csrf:
            headers.update({"Origin": self.configuration.host, "X-CSRF-Token": csrf})
        try:
            self.rest_client.DELETE(
                self.configuration.host + SESSION_PATH, headers=headers, _request_timeout=10
            )
        except Exception as error:  # the cluster ends it by itself when it times out
            log.info("PowerScale %s: logging out failed: %s", self.configuration.host, error)

    # logging in ---------------------------------------------------------------------------
    def _login(self, now: float) -> None:
        config = self.configuration
        body = {
            "username": config.username,
            "password": config.password,
            "services": ["platform", "namespace"],
        }
        answer = self.rest_client.POST(
            config.host + SESSION_PATH,
            headers={"Content-Type": "application/json"},
            body=body,
            _request_timeout=self.login_timeout,
        )  # raises ApiException on a refusal (401): OneFs says what it means
        received = answer.getheaders()
        getlist = getattr(received, "getlist", None)
        cookies = _cookies(getlist("Set-Cookie") if getlist else [received.get("Set-Cookie", "")])
        session = json.loads(answer.data or "{}")
        self._cookie = f"isisessid={cookies.get('isisessid', '')}"
        self._csrf = cookies.get("isicsrf")
        self._ends_at = now + _less_margin(float(session.get("timeout_absolute", 14400)))
        self._inactive = _less_margin(float(session.get("timeout_inactive", 900)))
        self.logins += 1
        log.debug("PowerScale %s: logged in (session %d)", config.host, self.logins)


def _less_margin(seconds: float) -> float:
    return seconds - min(MARGIN_SECONDS, seconds / 10)


def _cookies(headers: list[str]) -> dict[str, str]:
    """name → value of each Set-Cookie header (urllib3 may also join them with commas)."""
    found = {}
    for header in headers:
        for part in header.split(","):
            first = part.split(";", 1)[0].strip()
            if "=" in first:
                name, value = first.split("=", 1)
                found[name.strip()] = value.strip()
    return found


class OneFs:
    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        verify: bool,
        ca_file: str | None,
        timeout: float,
    ) -> None:
        config = isi.Configuration()
        config.host = url
        config.username = username
        config.password = password
        config.verify_ssl = verify
        config.ssl_ca_cert = ca_file
        config.debug = False
        self.url = config.host
        self.timeout = timeout
        client = SessionClient(config)
        self.client = client
        # Few, quick retries: an unreachable cluster fails within the volume's timeout.
        client.rest_client.pool_manager.connection_pool_kw["retries"] = urllib3.Retry(
            total=1, connect=1, read=0, backoff_factor=0.2
        )
        client.rest_client.pool_manager.connection_pool_kw["timeout"] = urllib3.Timeout(
            connect=timeout, read=timeout
        )
        self.namespace = isi.NamespaceApi(client)
        self.quotas = isi.QuotaApi(client)
        self.protocols = isi.ProtocolsApi(client)
        self.snapshots = isi.SnapshotApi(client)  # used by snapshots.py

    def with_timeout(self, timeout: float) -> OneFs:
        """The same client and session, with another timeout for each request."""
        other = copy.copy(self)
        other.timeout = timeout
        return other

    def close(self) -> None:
        """Log out: the session ends on the cluster."""
        self.client.logout()

    # directories --------------------------------------------------------------------------
    def directory_exists(self, path: str) -> bool:
        try:
            self.call(f"looking up {path}", lambda: self.namespace.get_directory_attributes(
                path.lstrip("/"), _request_timeout=self.timeout))  # fmt: skip
        except NotFound:
            return False
        return True

    def make_directory(self, path: str) -> None:
        self.call(
            f"creating directory {path}",
            lambda: self.namespace.create_directory(
                path.lstrip("/"), "container", recursive=True, _request_timeout=self.timeout
            ),
        )

    def delete_directory(self, path: str) -> None:
        with contextlib.suppress(NotFound):
            self.call(
                f"deleting directory {path}",
                lambda: self.namespace.delete_directory(
                    path.lstrip("/"), recursive=True, _request_timeout=self.timeout
                ),
            )

    # quotas ---------------------------------------------------------------------------------
    def find_quota(self, path: str) -> dict[str, Any] | None:
        found = self.call(
            f"reading the quota of {path}",
            lambda: self.quotas.list_quota_quotas(
                path=path, type="directory", _request_timeout=self.timeout
            ),
        )
        for quota in found.quotas or []:
            if quota.path == path:
                return _quota(quota)
        return None

    def list_quotas(self) -> list[dict[str, Any]]:
        """Every directory quota: id, path, hard threshold, usage, description (discovery)."""
        found = self.call(
            "listing quotas",
            lambda: self.quotas.list_quota_quotas(type="directory", _request_timeout=self.timeout),
        )
        return [_quota(quota) for quota in found.quotas or []]

    def export_paths(self) -> dict[str, int]:
        """Every NFS export's paths → its ID (for discovery)."""
        found = self.call(
            "listing NFS exports",
            lambda: self.protocols.list_nfs_exports(_request_timeout=self.timeout),
        )
        return {str(path): int(e.id) for e in found.exports or [] for path in e.paths or []}

    def smb_share_paths(self) -> dict[str, str]:
        """Every SMB share's name → its path (for discovery)."""
        found = self.call(
            "listing SMB shares",
            lambda: self.protocols.list_smb_shares(_request_timeout=self.timeout),
        )
        return {str(share.name): str(share.path) for share in found.shares or []}

    def create_quota(self, path: str, hard: int, description: str = "") -> str:
        params = isi.QuotaQuotaCreateParams(
            path=path,
            description=description,
            type="directory",
            include_snapshots=False,
            enforced=True,
            container=True,  # clients see the quota as the share's size
            thresholds=isi.QuotaQuotaThresholds(hard=hard),
        )
        made = self.call(
            f"setting a quota on {path}",
            lambda: self.quotas.create_quota_quota(params, _request_timeout=self.timeout),
        )
        return str(made.id)

    def set_quota(self, quota_id: str, hard: int) -> None:
        update = isi.QuotaQuota(thresholds=isi.QuotaQuotaThresholds(hard=hard))
        self.call(
            "raising the quota",
            lambda: self.quotas.update_quota_quota(update, quota_id, _request_timeout=self.timeout),
        )

    def describe_quota(self, quota_id: str, description: str) -> None:
        update = isi.QuotaQuota(description=description)
        self.call(
            "marking the quota",
            lambda: self.quotas.update_quota_quota(update, quota_id, _request_timeout=self.timeout),
        )

    def delete_quota(self, quota_id: str) -> None:
        with contextlib.suppress(NotFound):
            self.call(
                "deleting the quota",
                lambda: self.quotas.delete_quota_quota(quota_id, _request_timeout=self.timeout),
            )

    # NFS exports ----------------------------------------------------------------------------
    def find_export(self, path: str) -> int | None:
        found = self.call(
            f"reading the NFS exports of {path}",
            lambda: self.protocols.list_nfs_exports(path=path, _request_timeout=self.timeout),
        )
        for export in found.exports or []:
            if path in (export.paths or []):
                return int(export.id)
        return None

    def create_export(
        self, path: str, clients: list[str], readonly: bool, root_squash: bool
    ) -> int:
        params = isi.NfsExportCreateParams(
            paths=[path],
            clients=clients,
            read_only=readonly,
            description="orlop volume",
        )
        if not root_squash:
            params.map_root = isi.NfsSettingsExportSettingsMapAll(
                enabled=True, user=isi.AuthAccessAccessItemFileGroup(id="UID:0")
            )
        made = self.call(
            f"exporting {path} over NFS",
            lambda: self.protocols.create_nfs_export(params, _request_timeout=self.timeout),
        )
        return int(made.id)

    def delete_export(self, export_id: int) -> None:
        with contextlib.suppress(NotFound):
            self.call(
                f"deleting NFS export {export_id}",
                lambda: self.protocols.delete_nfs_export(export_id, _request_timeout=self.timeout),
            )

    # SMB shares -----------------------------------------------------------------------------
    def smb_share_path(self, name: str) -> str | None:
        try:
            found = self.call(
                f"reading SMB share {name}",
                lambda: self.protocols.get_smb_share(name, _request_timeout=self.timeout),
            )
        except NotFound:
            return None
        shares = found.shares or []
        return str(shares[0].path) if shares else None

    def create_smb_share(self, name: str, path: str) -> None:
        everyone = isi.AuthAccessAccessItemFileGroup(id="SID:S-1-1-0", name="Everyone")
        params = isi.SmbShareCreateParams(
            name=name,
            path=path,
            description="orlop volume",
            browsable=False,
            permissions=[
                isi.SmbSharePermission(permission="full", permission_type="allow", trustee=everyone)
            ],
        )
        self.call(
            f"sharing {path} over SMB as {name}",
            lambda: self.protocols.create_smb_share(params, _request_timeout=self.timeout),
        )

    def delete_smb_share(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self.call(
                f"deleting SMB share {name}",
                lambda: self.protocols.delete_smb_share(name, _request_timeout=self.timeout),
            )

    # errors ---------------------------------------------------------------------------------
    def call(self, doing: str, call: Callable[[], T]) -> T:
        """`call()`, once more after a refused session; its errors as Orlop's."""
        logins = self.client.logins
        self.client.login_timeout = self.timeout
        try:
            try:
                return call()
            except ApiException as error:
                if error.status != 401 or self.client.logins != logins:
                    raise
                # The session the cluster gave earlier was refused (it ended, or the cluster
                # restarted): log in again, once.
                self.client.forget()
                return call()
        except ApiException as error:
            message = _message(error)
            if error.status == 404:
                raise NotFound(f"PowerScale: {doing}: {message}") from None
            if error.status == 409:
                raise Conflict(f"PowerScale: {doing}: {message}") from None
            if error.status in (401, 403):
                raise BackendError(
                    f"PowerScale {self.url} refused {doing}: {message} (HTTP {error.status}); "
                    "check username and password"
                ) from None
            raise BackendError(
                f"PowerScale refused {doing}: {message} (HTTP {error.status})"
            ) from None
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise BackendError(
                f"PowerScale {self.url} is unreachable ({doing}): {str(reason)[:300]}"
            ) from None


def _message(error: Any) -> str:
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        return str(error.reason)
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        return "; ".join(f"{e.get('message')} ({e.get('code')})" for e in errors)
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(error.reason)


def _quota(quota: Any) -> dict[str, Any]:
    return {
        "id": str(quota.id),
        "path": str(quota.path),
        "hard": quota.thresholds.hard,
        "used": quota.usage.fslogical,
        "description": quota.description or "",
    }
