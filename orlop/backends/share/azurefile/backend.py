"""Azure File Storage volumes: an SMB share per volume (or a directory in one share).

    drivers:
      orlop-azure:
        backend: azurefile
        options: {size: 100G}
        settings: {account: mystorage, account_key_file: /etc/orlop/azure-key}

Create makes the share with a quota of `size` (whole GiB) and Orlop's metadata (the Docker
name), then mounts it once to prove the key and the SMB path. The same volume name on
another host finds the share by its name and metadata. Remove keeps the share unless
`delete_on_remove=true` (or `keep_on_remove=false`); a kept share is marked so (metadata
orlop_kept), and discovery no longer takes it in. With `share=NAME` each volume is a
directory in that existing share (which keeps its own quota). The SMB login is the account
name with the account key.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from orlop.backends.base import VolumeRef
from orlop.backends.fuse.layer import parse_timeout, read_secret
from orlop.backends.settings import secret_value
from orlop.core.model import ConfigError
from orlop.core.options import GIB

try:
    from orlop.backends.share.azurefile.api import METADATA_KEPT, METADATA_VOLUME, AzureFiles
except ModuleNotFoundError as missing:  # the SDK is an optional extra
    raise ConfigError(
        f"backend azurefile needs the Python package azure-storage-file-share ({missing}): "
        "pip install 'orlop[azurefile]' (scripts/setup installs it)"
    ) from None
from orlop.backends.share.clients import SmbTarget
from orlop.backends.share.layer import (
    ShareBackend,
    ShareSettings,
    host_option,
    presentation_options,
)
from orlop.backends.share.naming import canonical_share, share_name
from orlop.core.model import Conflict, InvalidOption, NotFound, Usage
from orlop.core.options import Option, OptionSet, bounded_size, canonical_bool, one_of

log = logging.getLogger(__name__)
MAX_QUOTA_GIB = 102400  # 100 TiB: a large file share, Azure's limit
TIERS = ("TransactionOptimized", "Hot", "Cool", "Premium")


class AzureFileSettings(ShareSettings):
    account: str | None = None
    account_key: SecretStr | None = None
    account_key_file: str | None = None
    connection_string_file: str | None = None
    endpoint_suffix: str = "core.windows.net"
    endpoint: str | None = None  # a full Files endpoint URL (another cloud, a test server)
    discover_interval: float = 30.0  # seconds between listings of shares other hosts made


def canonical_quota(value: str) -> str:
    """A size rounded up to whole GiB (Azure quotas are GiB), 1 GiB to 100 TiB, in bytes."""
    size = bounded_size(value, GIB, MAX_QUOTA_GIB * GIB, "an Azure file share")
    return str(math.ceil(size / GIB) * GIB)


class AzureFileBackend(ShareBackend):
    kind: ClassVar[str] = "azurefile"
    settings_model = AzureFileSettings
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("size", canonical_quota, "the share's quota, whole GiB (default 100G)"),
            Option("share", canonical_share, "an existing share: volumes are directories in it"),
            Option("access_tier", one_of(*TIERS), "TransactionOptimized, Hot, Cool, Premium"),
            # One meaning: keep_on_remove=false is delete_on_remove=true.
            host_option("delete_on_remove", canonical_bool, "delete the share at Remove (false)"),
            host_option("keep_on_remove", canonical_bool, "keep the share at Remove (true)"),
            host_option("timeout", parse_timeout, "seconds to reach Azure and mount (default 20)"),
            *presentation_options(),
        ]
    )

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        settings = self.settings
        assert isinstance(settings, AzureFileSettings)
        values = _connection_string(settings.connection_string_file)
        self.account = settings.account or values.get("AccountName")
        key = secret_value(settings.account_key) or values.get("AccountKey")
        if settings.account_key_file:
            key = _read_setting_file(settings.account_key_file, "account_key_file")
        if not self.account or not key:
            raise ConfigError(
                "azurefile needs settings account and account_key_file (or account_key, or "
                "connection_string_file)"
            )
        self._key = key
        suffix = values.get("EndpointSuffix", settings.endpoint_suffix)
        self.endpoint = (
            settings.endpoint
            or values.get("FileEndpoint")
            or f"https://{self.account}.file.{suffix}"
        ).rstrip("/")
        self.smb_host = settings.smb_host or (
            urlsplit(self.endpoint).hostname
            if settings.endpoint or values.get("FileEndpoint")
            else f"{self.account}.file.{suffix}"
        )

    @property
    def discover_interval(self) -> float:
        assert isinstance(self.settings, AzureFileSettings)
        return self.settings.discover_interval

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Shares holding Orlop volumes (by their metadata), for hosts that did not make them,
        with their real quota and access tier; never a share Remove kept."""
        defaults = self.options.validate({}, self.context.defaults)
        if "share" in defaults:
            return []  # volumes are directories of one share: Docker names are not listed
        found = []
        for share in self.api().list_shares():
            volume = share["metadata"].get(METADATA_VOLUME)
            if volume and share_name(volume) == share["name"]:
                options = {**defaults, "size": str(share["quota"] * GIB)}
                if share["access_tier"]:
                    options["access_tier"] = str(share["access_tier"])
                found.append((volume, options, {"share": share["name"], "directory": ""}))
        return found

    def api(self, volume: VolumeRef | None = None) -> AzureFiles:
        timeout = self.timeout(volume) if volume is not None else 20.0
        return AzureFiles(self.account or "", self._key, self.endpoint, timeout)

    # Backend protocol -------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        delete, keep = options.get("delete_on_remove"), options.get("keep_on_remove")
        if delete is not None and keep is not None and delete == keep:
            raise InvalidOption(
                f"delete_on_remove={delete} and keep_on_remove={keep} contradict: "
                "give one of them (keep_on_remove=false is delete_on_remove=true)"
            )
        if "share" in options and "size" in options:
            raise InvalidOption(
                f"option size sets a share's quota; with share={options['share']} the volume is "
                "a directory in that share and has its quota: leave size out"
            )
        if "share" in options and "access_tier" in options:
            raise InvalidOption("access_tier belongs to a share: leave it out with option share")

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        options = volume.options
        api = self.api(volume)
        if "share" in options:
            share, directory = options["share"], volume.name
            api.properties(share)  # NotFound says the share is missing
            made = api.create_directory(share, directory)
            record = {"share": share, "directory": directory}
            undo = (lambda: api.delete_tree(share, directory)) if made else None
        else:
            share, directory = share_name(volume.name), ""
            quota = int(options.get("size", str(100 * GIB))) // GIB
            made = api.create_share(share, quota, options.get("access_tier"), volume.name)
            metadata = {} if made else api.properties(share)["metadata"]
            if not made:
                owner = metadata.get(METADATA_VOLUME) or metadata.get(METADATA_KEPT)
                if owner != volume.name:
                    raise Conflict(
                        f"share {share} exists in account {self.account} but holds "
                        f"{'volume ' + owner if owner else 'no Orlop volume'}: choose another "
                        "name, or use option share to put volumes inside it"
                    )
            record = {"share": share, "directory": ""}
            undo = (lambda: api.delete_share(share)) if made else None
        try:
            self.prove(VolumeRef(volume.name, options, record))
        except BaseException:
            if undo is not None:
                undo()
            raise
        if not record["directory"] and metadata.get(METADATA_KEPT) == volume.name:
            api.set_metadata(share, {METADATA_VOLUME: volume.name})  # kept, taken back on purpose
        return record

    def remove(self, volume: VolumeRef) -> None:
        self.remove_local(volume)
        record = volume.record
        if not record:
            return
        api = self.api(volume)
        if not deletes(volume):
            if not record.get("directory"):  # no host's discovery takes it in again
                with contextlib.suppress(NotFound):
                    api.set_metadata(record["share"], {METADATA_KEPT: volume.name})
            return
        if not record.get("directory") and _kept_elsewhere(api, record["share"]):
            # Another host removed it and kept it: no longer a volume of this host's to
            # delete (a Create of the name takes it back).
            log.info("volume %s: kept by another host's Remove; not deleted", volume.name)
            return
        if record.get("directory"):
            api.delete_tree(record["share"], record["directory"])
        else:
            api.delete_share(record["share"])

    def usage(self, volume: VolumeRef) -> Usage | None:
        if volume.record.get("directory"):
            return super().usage(volume)  # a directory's share: walk it while mounted
        api = self.api(volume)
        share = volume.record["share"]
        used = api.used_bytes(share)
        size = api.properties(share)["quota"] * GIB
        return Usage(used=used, size=size, free=max(size - used, 0))

    def resize(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        if volume.record.get("directory"):
            raise InvalidOption(
                f"volume {volume.name} is a directory in share {volume.record['share']}: "
                "its quota is the share's; resize the share in Azure"
            )
        quota = int(canonical_quota(str(size))) // GIB
        api = self.api(volume)
        current = api.properties(volume.record["share"])["quota"]
        if quota < current:
            raise InvalidOption(
                f"volume {volume.name} has a quota of {current} GiB; shrinking is refused"
            )
        api.set_quota(volume.record["share"], quota)
        return dict(volume.record)

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        facts: dict[str, Any] = {"endpoint": self.endpoint, "smb": self.describe_remote(volume)}
        facts.update(volume.record)
        return facts

    # ShareBackend hooks -----------------------------------------------------------------
    def target(self, volume: VolumeRef) -> SmbTarget:
        record = volume.record or {"share": share_name(volume.name), "directory": ""}
        return SmbTarget(
            host=self.smb_host or "",
            share=record["share"],
            username=self.account or "",
            password=self._key,
            path=record.get("directory", ""),
            version="3.1.1",
            encrypt=True,  # Azure refuses unencrypted SMB from outside its region
        )


def _kept_elsewhere(api: AzureFiles, share: str) -> bool:
    try:
        metadata = api.properties(share)["metadata"]
    except NotFound:
        return False
    return METADATA_KEPT in metadata and METADATA_VOLUME not in metadata


def deletes(volume: VolumeRef) -> bool:
    """Does Remove delete the share (or directory)? Only when asked: kept by default."""
    options = volume.options
    return options.get("delete_on_remove") == "true" or options.get("keep_on_remove") == "false"


def _connection_string(path: str | None) -> dict[str, str]:
    """`AccountName=…;AccountKey=…;EndpointSuffix=…` from a file, as Azure's portal gives it."""
    if not path:
        return {}
    if not os.path.isabs(path):
        raise ConfigError(f"connection_string_file {path!r} must be an absolute path")
    text = _read_setting_file(path, "connection_string_file")
    values = {}
    for part in text.strip().split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _read_setting_file(path: str, setting: str) -> str:
    try:
        return read_secret(path, setting)
    except InvalidOption as error:
        raise ConfigError(f"azurefile setting {setting}: {error}") from None
