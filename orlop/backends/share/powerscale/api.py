"""Dell PowerScale (OneFS) through the official `isilon-sdk` (module v9_5_0, OneFS 9.5+).

One session per driver (session.py: POST /session/1/session; cookies isisessid and
isicsrf, then X-CSRF-Token and Origin on every call), https only. Every error becomes a
BackendError / NotFound / Conflict naming the path and OneFS's own message, never the
password.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from typing import Any, TypeVar

import isilon_sdk.v9_5_0 as isi  # type: ignore[import-untyped]
import urllib3
from isilon_sdk.v9_5_0.rest import ApiException  # type: ignore[import-untyped]

from orlop.backends.share.powerscale.session import SessionClient
from orlop.core.model import BackendError, Conflict, NotFound

T = TypeVar("T")


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
        self.snapshots = isi.SnapshotApi(client)

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
            self._call(f"looking up {path}", lambda: self.namespace.get_directory_attributes(
                path.lstrip("/"), _request_timeout=self.timeout))  # fmt: skip
        except NotFound:
            return False
        return True

    def make_directory(self, path: str) -> None:
        self._call(
            f"creating directory {path}",
            lambda: self.namespace.create_directory(
                path.lstrip("/"), "container", recursive=True, _request_timeout=self.timeout
            ),
        )

    def delete_directory(self, path: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(
                f"deleting directory {path}",
                lambda: self.namespace.delete_directory(
                    path.lstrip("/"), recursive=True, _request_timeout=self.timeout
                ),
            )

    # quotas ---------------------------------------------------------------------------------
    def find_quota(self, path: str) -> dict[str, Any] | None:
        found = self._call(
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
        found = self._call(
            "listing quotas",
            lambda: self.quotas.list_quota_quotas(type="directory", _request_timeout=self.timeout),
        )
        return [_quota(quota) for quota in found.quotas or []]

    def export_paths(self) -> dict[str, int]:
        """Every NFS export's paths → its ID (for discovery)."""
        found = self._call(
            "listing NFS exports",
            lambda: self.protocols.list_nfs_exports(_request_timeout=self.timeout),
        )
        return {str(path): int(e.id) for e in found.exports or [] for path in e.paths or []}

    def smb_share_paths(self) -> dict[str, str]:
        """Every SMB share's name → its path (for discovery)."""
        found = self._call(
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
        made = self._call(
            f"setting a quota on {path}",
            lambda: self.quotas.create_quota_quota(params, _request_timeout=self.timeout),
        )
        return str(made.id)

    def set_quota(self, quota_id: str, hard: int) -> None:
        update = isi.QuotaQuota(thresholds=isi.QuotaQuotaThresholds(hard=hard))
        self._call(
            "raising the quota",
            lambda: self.quotas.update_quota_quota(update, quota_id, _request_timeout=self.timeout),
        )

    def describe_quota(self, quota_id: str, description: str) -> None:
        update = isi.QuotaQuota(description=description)
        self._call(
            "marking the quota",
            lambda: self.quotas.update_quota_quota(update, quota_id, _request_timeout=self.timeout),
        )

    def delete_quota(self, quota_id: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(
                "deleting the quota",
                lambda: self.quotas.delete_quota_quota(quota_id, _request_timeout=self.timeout),
            )

    # NFS exports ----------------------------------------------------------------------------
    def find_export(self, path: str) -> int | None:
        found = self._call(
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
        made = self._call(
            f"exporting {path} over NFS",
            lambda: self.protocols.create_nfs_export(params, _request_timeout=self.timeout),
        )
        return int(made.id)

    def delete_export(self, export_id: int) -> None:
        with contextlib.suppress(NotFound):
            self._call(
                f"deleting NFS export {export_id}",
                lambda: self.protocols.delete_nfs_export(export_id, _request_timeout=self.timeout),
            )

    # SMB shares -----------------------------------------------------------------------------
    def smb_share_path(self, name: str) -> str | None:
        try:
            found = self._call(
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
        self._call(
            f"sharing {path} over SMB as {name}",
            lambda: self.protocols.create_smb_share(params, _request_timeout=self.timeout),
        )

    def delete_smb_share(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(
                f"deleting SMB share {name}",
                lambda: self.protocols.delete_smb_share(name, _request_timeout=self.timeout),
            )

    # snapshots ------------------------------------------------------------------------------
    def create_snapshot(self, path: str, name: str) -> dict[str, Any]:
        made = self._call(
            f"snapshotting {path}",
            lambda: self.snapshots.create_snapshot_snapshot(
                isi.SnapshotSnapshotCreateParams(name=name, path=path),
                _request_timeout=self.timeout,
            ),
        )
        return _snapshot(made)

    def list_snapshots(self) -> list[dict[str, Any]]:
        found = self._call(
            "listing snapshots",
            lambda: self.snapshots.list_snapshot_snapshots(_request_timeout=self.timeout),
        )
        return [_snapshot(item) for item in found.snapshots or []]

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._call(
            f"deleting snapshot {snapshot_id}",
            lambda: self.snapshots.delete_snapshot_snapshot(
                snapshot_id, _request_timeout=self.timeout
            ),
        )

    # errors ---------------------------------------------------------------------------------
    def _call(self, doing: str, call: Callable[[], T]) -> T:
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


def _snapshot(item: Any) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "name": item.name,
        "path": item.path,
        "state": item.state,
        "created": item.created,
        "size": item.size,
    }
