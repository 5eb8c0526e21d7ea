"""Azure Files as a share provider: an SMB share per volume (or a directory in one share).

Create makes the share with a quota of `size` (whole GiB) and Orlop's metadata (the Docker
name, labels.py), then proves it with one mount. The same volume name on another host
finds the share by its name and metadata. Remove keeps the share unless
`delete_on_remove=true` (or `keep_on_remove=false`); a kept share is marked so, and
discovery no longer takes it in. With `share=NAME` each volume is a directory in that
existing share (which keeps its own quota).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.fuse.options import timeout_of
from orlop.backends.share.azurefile import labels
from orlop.backends.share.azurefile.limits import DEFAULT_QUOTA, OPTIONS, canonical_quota
from orlop.backends.share.azurefile.settings import AzureFileSettings, account_of
from orlop.backends.share.clients import SmbTarget
from orlop.backends.share.naming import share_name
from orlop.backends.share.provider import Prove, Walk, target_text
from orlop.core.model import ConfigError, Conflict, InvalidOption, NotFound, Usage
from orlop.core.options import GIB

try:
    from orlop.backends.share.azurefile.client import AzureFiles
except ModuleNotFoundError as missing:  # the SDK is an optional extra
    raise ConfigError(
        f"backend azurefile needs the Python package azure-storage-file-share ({missing}): "
        "pip install 'orlop[azurefile]' (scripts/setup installs it)"
    ) from None

log = logging.getLogger(__name__)


class AzureFileProvider:
    def __init__(self, context: BackendContext, settings: AzureFileSettings) -> None:
        self.context = context
        self.settings = settings
        account = account_of(settings)
        self.account = account.name
        self._key = account.key
        self.endpoint = account.endpoint
        self.smb_host = account.smb_host
        self.discover_interval = settings.discover_interval

    def api(self, volume: VolumeRef | None = None) -> AzureFiles:
        timeout = timeout_of(volume) if volume is not None else 20.0
        return AzureFiles(self.account, self._key, self.endpoint, timeout)

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

    def create(self, volume: VolumeRef, prove: Prove) -> dict[str, Any]:
        options = volume.options
        api = self.api(volume)
        metadata: dict[str, str] = {}
        undo: Callable[[], None] | None
        if "share" in options:
            share, directory = options["share"], volume.name
            api.properties(share)  # NotFound says the share is missing
            made = api.create_directory(share, directory)
            record = {"share": share, "directory": directory}
            undo = (lambda: api.delete_tree(share, directory)) if made else None
        else:
            share, directory = share_name(volume.name), ""
            quota = int(options.get("size", str(DEFAULT_QUOTA))) // GIB
            made = api.create_share(share, quota, options.get("access_tier"), volume.name)
            metadata = {} if made else api.properties(share)["metadata"]
            if not made:
                owner = labels.owner(metadata)
                if owner != volume.name:
                    raise Conflict(
                        f"share {share} exists in account {self.account} but holds "
                        f"{'volume ' + owner if owner else 'no Orlop volume'}: choose another "
                        "name, or use option share to put volumes inside it"
                    )
            record = {"share": share, "directory": ""}
            undo = (lambda: api.delete_share(share)) if made else None
        try:
            prove(VolumeRef(volume.name, options, record))
        except BaseException:
            if undo is not None:
                undo()
            raise
        if not record["directory"] and metadata.get(labels.METADATA_KEPT) == volume.name:
            api.set_metadata(share, labels.made(volume.name))  # kept, taken back on purpose
        return record

    def remove(self, volume: VolumeRef) -> None:
        record = volume.record
        if not record:
            return
        api = self.api(volume)
        if not deletes(volume):
            if not record.get("directory"):  # no host's discovery takes it in again
                with contextlib.suppress(NotFound):
                    api.set_metadata(record["share"], labels.kept(volume.name))
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

    def usage(self, volume: VolumeRef, walk: Walk) -> Usage | None:
        if volume.record.get("directory"):
            return walk(volume)  # a directory's share: walk it while mounted
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
        facts: dict[str, Any] = {"endpoint": self.endpoint, "smb": target_text(self.target(volume))}
        facts.update(volume.record)
        return facts

    def target(self, volume: VolumeRef) -> SmbTarget:
        record = volume.record or {"share": share_name(volume.name), "directory": ""}
        return SmbTarget(
            host=self.smb_host,
            share=record["share"],
            username=self.account,
            password=self._key,
            path=record.get("directory", ""),
            version="3.1.1",
            encrypt=True,  # Azure refuses unencrypted SMB from outside its region
        )

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Shares holding Orlop volumes (by their metadata), for hosts that did not make them,
        with their real quota and access tier; never a share Remove kept."""
        defaults = OPTIONS.validate({}, self.context.defaults)
        if "share" in defaults:
            return []  # volumes are directories of one share: Docker names are not listed
        found = []
        for share in self.api().list_shares():
            volume = labels.volume_in(share)
            if volume:
                options = {**defaults, "size": str(share["quota"] * GIB)}
                if share["access_tier"]:
                    options["access_tier"] = str(share["access_tier"])
                found.append((volume, options, {"share": share["name"], "directory": ""}))
        return found


def _kept_elsewhere(api: AzureFiles, share: str) -> bool:
    try:
        metadata = api.properties(share)["metadata"]
    except NotFound:
        return False
    return labels.is_kept(metadata)


def deletes(volume: VolumeRef) -> bool:
    """Does Remove delete the share (or directory)? Only when asked: kept by default."""
    options = volume.options
    return options.get("delete_on_remove") == "true" or options.get("keep_on_remove") == "false"
