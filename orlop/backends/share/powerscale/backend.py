"""Dell PowerScale / Isilon volumes: a directory with a quota, exported over NFS or SMB.

    drivers:
      orlop-isilon:
        backend: powerscale
        options: {size: 50G, protocol: smb}
        settings: {url: "https://isilon.example.com:8080", username: orlop,
                   password_file: /etc/orlop/isilon-password, ca_file: /etc/orlop/isilon-ca.pem}

A volume is the directory `<base_path>/<name>` (namespace API), a directory quota whose
hard threshold is `size` (so clients see `size` as the share's capacity), and an NFS
export or an SMB share of it. The same name on another host finds them all by path.
Remove deletes export, quota and directory unless `keep_on_remove=true`. Snapshots are
OneFS snapshots of the directory (`orlop snapshot create|ls|rm`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from orlop.backends.base import Capabilities, Check, VolumeRef
from orlop.backends.fuse.layer import parse_timeout, read_secret, write_secret
from orlop.backends.settings import secret_value
from orlop.backends.share.clients import NfsTarget, SmbTarget
from orlop.backends.share.layer import (
    ShareBackend,
    ShareSettings,
    Target,
    host_option,
    nfs_client_check,
    presentation_options,
)
from orlop.backends.share.naming import share_name
from orlop.backends.share.powerscale.making import VolumeMaker
from orlop.backends.share.powerscale.marks import Mark
from orlop.core.model import ConfigError, InvalidOption, NotFound, Usage, rfc3339
from orlop.core.options import (
    MAX_SIZE,
    Option,
    OptionSet,
    bounded_size,
    canonical_bool,
    one_of,
)

try:
    from orlop.backends.share.powerscale.api import OneFs
except ModuleNotFoundError as missing:  # the SDK is an optional extra
    raise ConfigError(
        f"backend powerscale needs the Python package isilon-sdk ({missing}): "
        "pip install 'orlop[powerscale]' (scripts/setup installs it)"
    ) from None

log = logging.getLogger(__name__)
_CLIENT_RE = re.compile(r"[A-Za-z0-9.:/\-\[\]*]+\Z")
DEFAULT_SIZE = 10 * 1024**3


class PowerScaleSettings(ShareSettings):
    url: str  # https://cluster:8080
    username: str
    password: SecretStr | None = None
    password_file: str | None = None
    ca_file: str | None = None
    verify: bool = True
    base_path: str = "/ifs/orlop"
    nfs_host: str | None = None  # default: the host of url (as smb_host)
    discover_interval: float = 30.0  # seconds between listings of volumes other hosts made


def canonical_clients(value: str) -> str:
    """NFS clients allowed: host names, addresses or CIDR ranges, comma-separated."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    for part in parts:
        if not _CLIENT_RE.match(part):
            raise ValueError(f"{part!r} is not a host name, address or CIDR range")
    return ",".join(parts)


def canonical_hard(value: str) -> str:
    return str(bounded_size(value, 1024**2, MAX_SIZE, "a PowerScale directory quota"))


class PowerScaleBackend(ShareBackend):
    kind: ClassVar[str] = "powerscale"
    settings_model = PowerScaleSettings
    capabilities = Capabilities(scope="global", resize=True, quota=True, snapshot=True)
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("size", canonical_hard, "the directory quota's hard threshold (default 10G)"),
            Option("protocol", one_of("nfs", "smb"), "nfs (default) or smb"),
            Option("nfs_version", one_of("3", "4", "4.0", "4.1", "4.2"), "NFS version (4.1)"),
            Option("clients", canonical_clients, "NFS clients allowed, comma-separated (all)"),
            Option("root_squash", canonical_bool, "NFS: map root to nobody (true)"),
            host_option(
                "keep_on_remove", canonical_bool, "Remove keeps directory, quota and export (false)"
            ),
            host_option("timeout", parse_timeout, "seconds to reach the cluster and mount (20)"),
            *presentation_options(),
        ]
    )

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        settings = self.settings
        assert isinstance(settings, PowerScaleSettings)
        self.ps: PowerScaleSettings = settings
        password = secret_value(settings.password)
        if settings.password_file:
            password = read_secret(settings.password_file, "password file")
        if not password:
            raise ConfigError("powerscale needs setting password_file (or password)")
        self._password = password
        if not settings.url.startswith("https://"):
            raise ConfigError(f"powerscale url {settings.url!r} must start with https://")
        if not re.fullmatch(r"/ifs(/[A-Za-z0-9._-]+)+", settings.base_path):
            raise ConfigError(f"base_path {settings.base_path!r} must be a path under /ifs")
        self.cluster_host = urlsplit(settings.url).hostname or ""
        self._api: OneFs | None = None
        self.creating_dir = context.path("creating")  # create tokens, while a create runs
        os.makedirs(self.creating_dir, mode=0o700, exist_ok=True)
        self._api_lock = threading.Lock()

    def api(self, volume: VolumeRef | None = None) -> OneFs:
        """The driver's one client (one session), with the volume's timeout."""
        timeout = self.timeout(volume) if volume is not None else 20.0
        with self._api_lock:
            if self._api is None:
                settings = self.ps
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
        return f"{self.ps.base_path}/{name}"

    # Backend protocol -------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        protocol = options.get("protocol", "nfs")
        nfs_only = [key for key in ("nfs_version", "clients", "root_squash") if key in options]
        if protocol == "smb" and nfs_only:
            raise InvalidOption(f"{', '.join(nfs_only)}: NFS options, but protocol is smb")

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        token_file = self._token_file(volume.name)
        try:
            return self._maker(volume, lambda text: write_secret(token_file, text)).make()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(token_file)

    def _maker(self, volume: VolumeRef, keep_token: Callable[[str], Any]) -> VolumeMaker:
        options = volume.options
        return VolumeMaker(
            self.api(volume),
            volume.name,
            self.path_of(volume.name),
            options,
            int(options.get("size", DEFAULT_SIZE)),
            lambda record: self.prove(VolumeRef(volume.name, options, record)),
            self.timeout(volume),
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
        self._maker(volume, lambda text: None).undo_interrupted(kept)
        os.unlink(self._token_file(volume.name))

    def remove(self, volume: VolumeRef) -> None:
        self.remove_local(volume)
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

    def usage(self, volume: VolumeRef) -> Usage | None:
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
        return {"cluster": self.ps.url, "remote": self.describe_remote(volume), **volume.record}

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [*super().host_checks(), nfs_client_check()]

    # discovery: volumes other hosts made ----------------------------------------------------
    @property
    def discover_interval(self) -> float:
        return self.ps.discover_interval

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Directories of base_path with a quota and an export or share, whichever host made
        them, as they are (size, protocol, keep_on_remove); not those being created or kept."""
        defaults = self.options.validate({}, self.context.defaults)
        preferred = defaults.get("protocol", "nfs")
        api = self.api()
        prefix = self.ps.base_path + "/"
        exports, shares = api.export_paths(), api.smb_share_paths()
        found = []
        for quota in sorted(api.list_quotas(), key=lambda q: str(q["path"])):
            path = str(quota["path"])
            name = path[len(prefix) :] if path.startswith(prefix) else ""
            mark = Mark.parse(str(quota["description"]))
            if not name or "/" in name or (mark is not None and mark.state != "ready"):
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
                for key in ("nfs_version", "clients", "root_squash"):
                    options.pop(key, None)
            if mark is not None and mark.keep:
                options["keep_on_remove"] = "true"
            found.append((name, options, record))
        return found

    # snapshots ----------------------------------------------------------------------------
    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        made = self.api(volume).create_snapshot(volume.record["path"], name)
        return self._snapshot_view(made)

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        found = [self._snapshot_view(s) for s in self.api().list_snapshots()]
        return [s for s in found if s["volume"] and volume in (None, s["volume"])]

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        for found in self.list_snapshots(None):
            if snapshot in (found["id"], found["name"]):
                self.api().delete_snapshot(found["id"])
                return found
        raise NotFound(f"no snapshot {snapshot} of this driver's volumes")

    def _snapshot_view(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        prefix = self.ps.base_path + "/"
        path = str(snapshot.get("path") or "")
        rest = path[len(prefix) :] if path.startswith(prefix) else ""
        volume = rest if rest and "/" not in rest else None
        created = snapshot.get("created")
        return {
            "id": snapshot["id"],
            "name": snapshot["name"],
            "volume": volume,
            "state": snapshot["state"],
            "created_at": _rfc3339(created) if created else None,
            "size": snapshot.get("size"),
        }

    # ShareBackend hooks -----------------------------------------------------------------
    def target(self, volume: VolumeRef) -> Target:
        record = volume.record or {"path": self.path_of(volume.name)}
        protocol = record.get("protocol", volume.options.get("protocol", "nfs"))
        if protocol == "nfs":
            return NfsTarget(
                host=self.ps.nfs_host or self.cluster_host,
                export=record["path"],
                version=volume.options.get("nfs_version", "4.1"),
            )
        return SmbTarget(
            host=self.ps.smb_host or self.cluster_host,
            share=record.get("smb_share") or share_name(volume.name),
            username=self.ps.username,
            password=self._password,
            version="3.0",
        )


def keeps(volume: VolumeRef) -> bool:
    """Does Remove keep the volume's data? keep_on_remove says; unset, as it was made."""
    asked = volume.options.get("keep_on_remove")
    return asked == "true" or (asked != "false" and bool(volume.record.get("keep")))


def _rfc3339(epoch: int) -> str:
    return rfc3339(int(epoch))
