"""The Azure Files client: the official SDK (azure-storage-file-share), the calls Orlop makes.

Every SDK error becomes a BackendError (or NotFound / Conflict) whose message names the
share and Azure's error code, never a key. The SDK signs each request with the account
key (SharedKey); retries are few and short, so an unreachable endpoint fails within the
volume's timeout instead of the SDK's minutes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.fileshare import (
    LinearRetry,
    ShareClient,
    ShareDirectoryClient,
    ShareServiceClient,
)

from orlop.backends.share.azurefile import labels
from orlop.core.model import BackendError, Conflict, NotFound

T = TypeVar("T")

# The SDK logs every request and its headers at INFO: keep it quiet, whatever the level.
logging.getLogger("azure").setLevel(logging.WARNING)


class AzureFiles:
    def __init__(self, account: str, key: str, endpoint: str, timeout: float) -> None:
        self.account = account
        self.endpoint = endpoint
        self.service = ShareServiceClient(
            account_url=endpoint,
            credential={"account_name": account, "account_key": key},
            # The storage SDK's default retry waits 15 s, then 45 s, between attempts.
            retry_policy=LinearRetry(backoff=1, random_jitter_range=1, retry_total=1),
            connection_timeout=timeout,
            read_timeout=timeout,
        )

    def share(self, name: str) -> ShareClient:
        return self.service.get_share_client(name)

    # shares -----------------------------------------------------------------------------
    def create_share(self, name: str, quota_gib: int, tier: str | None, volume: str) -> bool:
        """Create the share; False if it exists already (it is checked by the caller)."""
        kwargs: dict[str, Any] = {"quota": quota_gib, "metadata": labels.made(volume)}
        if tier:
            kwargs["access_tier"] = tier
        try:
            self._call(f"creating share {name}", lambda: self.share(name).create_share(**kwargs))
        except Conflict:
            return False
        return True

    def properties(self, name: str) -> dict[str, Any]:
        """quota (GiB), access tier and metadata of a share; NotFound if there is none."""
        found = self._call(f"reading share {name}", lambda: self.share(name).get_share_properties())
        return {
            "quota": int(found.quota),
            "access_tier": found.access_tier,
            "metadata": dict(found.metadata or {}),
        }

    def used_bytes(self, name: str) -> int:
        return int(self._call(f"reading share {name}", lambda: self.share(name).get_share_stats()))

    def set_quota(self, name: str, quota_gib: int) -> None:
        self._call(
            f"setting the quota of share {name}",
            lambda: self.share(name).set_share_quota(quota_gib),
        )

    def delete_share(self, name: str) -> None:
        """Delete the share and its snapshots; a share already gone is not an error."""
        with contextlib.suppress(NotFound):
            self._call(
                f"deleting share {name}",
                lambda: self.share(name).delete_share(delete_snapshots=True),
            )

    def set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        """Replace the share's metadata (Azure keeps no other metadata than the one given)."""
        self._call(
            f"marking share {name}",
            lambda: self.share(name).set_share_metadata(metadata),
        )

    def list_shares(self) -> list[dict[str, Any]]:
        """Every share: name, quota (GiB), access tier and metadata."""
        shares = self._call(
            "listing shares", lambda: list(self.service.list_shares(include_metadata=True))
        )
        return [
            {
                "name": share.name,
                "quota": int(share.quota),
                "access_tier": share.access_tier,
                "metadata": dict(share.metadata or {}),
            }
            for share in shares
        ]

    # directories ------------------------------------------------------------------------
    def directory(self, share: str, path: str) -> ShareDirectoryClient:
        return self.share(share).get_directory_client(path)

    def create_directory(self, share: str, path: str) -> bool:
        """Create a directory in a share; False if it exists already."""
        try:
            self._call(
                f"creating directory {path} in share {share}",
                lambda: self.directory(share, path).create_directory(),
            )
        except Conflict:
            return False
        return True

    def delete_tree(self, share: str, path: str) -> None:
        """Delete a directory and everything in it (the REST API deletes one item at a time)."""
        directory = self.directory(share, path)
        try:
            entries = self._call(
                f"listing {path} in share {share}",
                lambda: list(directory.list_directories_and_files()),
            )
        except NotFound:
            return
        for entry in entries:
            child = f"{path}/{entry['name']}"
            if entry["is_directory"]:
                self.delete_tree(share, child)
            else:
                name: str = entry["name"]
                self._call(
                    f"deleting {child} in share {share}",
                    lambda name=name: directory.delete_file(name),  # type: ignore[misc]
                )
        with contextlib.suppress(NotFound):
            self._call(f"deleting directory {path} in share {share}", directory.delete_directory)

    # errors ---------------------------------------------------------------------------------
    def _call(self, doing: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except ResourceNotFoundError as error:
            raise NotFound(f"Azure Files: {doing}: {_code(error)} (not found)") from None
        except ResourceExistsError as error:
            raise Conflict(f"Azure Files: {doing}: {_code(error)}") from None
        except ClientAuthenticationError as error:
            raise BackendError(
                f"Azure Files refused {doing} for account {self.account}: {_code(error)} "
                f"(HTTP {error.status_code}): check the account name and key"
            ) from None
        except HttpResponseError as error:
            header = ""
            if error.response is not None:
                header = _header_name(error.response.text())
            raise BackendError(
                f"Azure Files refused {doing}: {_code(error)} (HTTP {error.status_code})"
                f"{f' in {header}' if header else ''}"
            ) from None
        except ServiceRequestError as error:
            raise BackendError(
                f"Azure Files endpoint {self.endpoint} is unreachable ({doing}): "
                f"{_first_line(error)}"
            ) from None
        except AzureError as error:
            raise BackendError(f"Azure Files: {doing} failed: {_first_line(error)}") from None


def _code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or error.reason or "error")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def _header_name(body: str) -> str:
    start = body.find("<HeaderName>")
    end = body.find("</HeaderName>")
    return body[start + len("<HeaderName>") : end] if 0 <= start < end else ""
