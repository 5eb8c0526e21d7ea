"""PowerScale as a share provider: a directory with a quota, exported over NFS or SMB.

A volume is the directory `<base_path>/<name>` (namespace API), a directory quota whose
hard threshold is `size` (so clients see `size` as the share's capacity), and an NFS
export or an SMB share of it. The same name on another host finds them all by path.
Remove deletes export, quota and directory unless `keep_on_remove=true`; a kept volume's
quota is marked so (labels.py), and discovery no longer takes it in. Create, when other
hosts may make the same volume at once, is `VolumeMaker` (making.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.fuse.options import timeout_of
from orlop.backends.fuse.secret_files import write_secret
from orlop.backends.share.clients import NfsTarget, SmbTarget
from orlop.backends.share.naming import share_name
from orlop.backends.share.powerscale.labels import Mark, volume_at
from orlop.backends.share.powerscale.limits import DEFAULT_SIZE, NFS_ONLY, OPTIONS
from orlop.backends.share.powerscale.making import VolumeMaker
from orlop.backends.share.powerscale.settings import PowerScaleSettings, password_of
from orlop.backends.share.powerscale.snapshots import PowerScaleSnapshots
from orlop.backends.share.provider import Prove, Target, Walk, target_text
from orlop.core.model import ConfigError, InvalidOption, NotFound, Usage

if TYPE_CHECKING:
    from orlop.backends.share.powerscale.client import OneFs

# The SDK (an optional extra) is imported at the first call: its 1,500 modules take
# seconds, which a managed plugin's start cannot spend. Whether it is there is known now.
if importlib.util.find_spec("isilon_sdk") is None:
    raise ConfigError(
        "backend powerscale needs the Python package isilon-sdk (No module named "
        "'isilon_sdk'): pip install 'orlop[powerscale]' (scripts/setup installs it)"
    )

log = logging.getLogger(__name__)


class PowerScaleProvider:
    def __init__(self, context: BackendContext, settings: PowerScaleSettings) -> None:
        self.context = context
        self.settings = settings
        self._password = password_of(settings)
        self.cluster_host = urlsplit(settings.url).hostname or ""
        self.discover_interval = settings.discover_interval
        self._api: OneFs | None = None
        self._api_lock = threading.Lock()
        self.creating_dir = context.path("creating")  # create tokens, while a create runs
        os.makedirs(self.creating_dir, mode=0o700, exist_ok=True)
        self.snapshots = PowerScaleSnapshots(self.api, settings.base_path)

    def api(self, volume: VolumeRef | None = None) -> OneFs:
        """The driver's one client (one session), with the volume's timeout."""
        timeout = timeout_of(volume) if volume is not None else 20.0
        with self._api_lock:
            if self._api is None:
                from orlop.backends.share.powerscale.client import OneFs

                settings = self.settings
                self._api = OneFs(
                    settings.url,
                    settings.username,
                    self._password,
                    verify=settings.verify,
                    ca_file=settings.ca_file,
                    timeout=20.0,
                )
            return self._api.with_timeout(timeout)

    def close(self) -> None:
        """At shutdown: log out of the cluster."""
        with self._api_lock:
            api, self._api = self._api, None
        if api is not None:
            api.close()

    def path_of(self, name: str) -> str:
        return f"{self.settings.base_path}/{name}"

    # ShareProvider ------------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        protocol = options.get("protocol", "nfs")
        nfs_only = [key for key in NFS_ONLY if key in options]
        if protocol == "smb" and nfs_only:
            raise InvalidOption(f"{', '.join(nfs_only)}: NFS options, but protocol is smb")

    def create(self, volume: VolumeRef, prove: Prove) -> dict[str, Any]:
        token_file = self._token_file(volume.name)

        def keep_token(text: str) -> None:
            write_secret(token_file, text)

        try:
            return self._maker(volume, prove, keep_token).make()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(token_file)

    def remove(self, volume: VolumeRef) -> None:
        record = volume.record
        if not record:  # a create that failed, or was interrupted by the daemon's death
            self._undo_interrupted_create(volume)
            return
        api = self.api(volume)
        if keeps(volume):
            if record.get("quota_id"):  # no host's discovery takes it in again
                kept = Mark(volume.name, "kept", keep=True).text()
                with contextlib.suppress(NotFound):
                    api.describe_quota(str(record["quota_id"]), kept)
            return
        quota = api.find_quota(record["path"])
        mark = Mark.parse(str(quota["description"])) if quota else None
        if mark is not None and mark.state == "kept":
            # Another host removed it with keep_on_remove=true: the data is no longer a
            # volume of this host's to delete (a Create of the name takes it back).
            log.info("volume %s: kept by another host's Remove; not deleted", volume.name)
            return
        if record.get("export_id") is not None:
            api.delete_export(int(record["export_id"]))
        if record.get("smb_share"):
            api.delete_smb_share(record["smb_share"])
        if record.get("quota_id"):
            api.delete_quota(str(record["quota_id"]))
        api.delete_directory(record["path"])

    def target(self, volume: VolumeRef) -> Target:
        record = volume.record or {"path": self.path_of(volume.name)}
        protocol = record.get("protocol", volume.options.get("protocol", "nfs"))
        if protocol == "nfs":
            return NfsTarget(
                host=self.settings.nfs_host or self.cluster_host,
                export=record["path"],
                version=volume.options.get("nfs_version", "4.1"),
            )
        return SmbTarget(
            host=self.settings.smb_host or self.cluster_host,
            share=record.get("smb_share") or share_name(volume.name),
            username=self.settings.username,
            password=self._password,
            version="3.0",
        )

    def usage(self, volume: VolumeRef, walk: Walk) -> Usage | None:
        quota = self.api(volume).find_quota(volume.record["path"])
        if quota is None:
            return None
        hard, used = int(quota["hard"]), int(quota["used"])
        return Usage(used=used, size=hard, free=max(hard - used, 0))

    def resize(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        api = self.api(volume)
        quota = api.find_quota(volume.record["path"])
        if quota is None:
            raise NotFound(f"volume {volume.name} has no quota on the cluster any more")
        if size < int(quota["hard"]):
            raise InvalidOption(
                f"volume {volume.name} has a quota of {quota['hard']} bytes; shrinking is refused"
            )
        api.set_quota(str(quota["id"]), size)
        return dict(volume.record)

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        remote = target_text(self.target(volume))
        return {"cluster": self.settings.url, "remote": remote, **volume.record}

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Directories of base_path with a quota and an export or share, whichever host made
        them, as they are (size, protocol, keep_on_remove); not those being created or kept."""
        defaults = OPTIONS.validate({}, self.context.defaults)
        preferred = defaults.get("protocol", "nfs")
        api = self.api()
        exports, shares = api.export_paths(), api.smb_share_paths()
        found = []
        for quota in sorted(api.list_quotas(), key=lambda q: str(q["path"])):
            path = str(quota["path"])
            name = volume_at(self.settings.base_path, path)
            mark = Mark.parse(str(quota["description"]))
            if not name or (mark is not None and mark.state != "ready"):
                continue
            record: dict[str, Any] = {"path": path, "quota_id": quota["id"]}
            reachable = {"nfs": path in exports, "smb": shares.get(share_name(name)) == path}
            protocol = preferred if reachable[preferred] else ("smb", "nfs")[reachable["nfs"]]
            if not reachable[protocol]:
                continue
            record["protocol"] = protocol
            if protocol == "nfs":
                record["export_id"] = exports[path]
            else:
                record["smb_share"] = share_name(name)
            options = {**defaults, "size": str(quota["hard"]), "protocol": protocol}
            if protocol == "smb":
                for key in NFS_ONLY:
                    options.pop(key, None)
            if mark is not None and mark.keep:
                options["keep_on_remove"] = "true"
            found.append((name, options, record))
        return found

    # a create, and undoing one a crash interrupted ----------------------------------------
    def _maker(
        self, volume: VolumeRef, prove: Prove, keep_token: Callable[[str], Any]
    ) -> VolumeMaker:
        options = volume.options
        return VolumeMaker(
            self.api(volume),
            volume.name,
            self.path_of(volume.name),
            options,
            int(options.get("size", DEFAULT_SIZE)),
            lambda record: prove(VolumeRef(volume.name, options, record)),
            timeout_of(volume),
            keep_token,
        )

    def _token_file(self, name: str) -> str:
        return os.path.join(self.creating_dir, name)

    def _undo_interrupted_create(self, volume: VolumeRef) -> None:
        try:
            with open(self._token_file(volume.name)) as file:
                kept = file.read().strip()
        except FileNotFoundError:
            return
        self._maker(volume, lambda _volume: None, lambda text: None).undo_interrupted(kept)
        os.unlink(self._token_file(volume.name))


def keeps(volume: VolumeRef) -> bool:
    """Does Remove keep the volume's data? keep_on_remove says; unset, as it was made."""
    asked = volume.options.get("keep_on_remove")
    return asked == "true" or (asked != "false" and bool(volume.record.get("keep")))
