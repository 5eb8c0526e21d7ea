"""Directory volumes: the embedded default, with the options of Docker's `local` driver.

A volume is `<state>/volumes/<name>/_data`. With no `type` it is a plain directory. With
Docker local's `type`/`device`/`o` it is a mount made on first use and removed after last
use: tmpfs, a bind of a host directory (`type=none o=bind device=/path`), or a filesystem on
a block device or image file (ext4, xfs, btrfs). `uid`, `gid` and `mode` set the owner and
permissions of the volume root.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from typing import Any, ClassVar

from orlop.backends.base import (
    BackendContext,
    Capabilities,
    Check,
    VolumeRef,
    filesystem_check,
    tool_check,
)
from orlop.backends.directory.snapshots import DirectorySnapshots
from orlop.backends.settings import BackendSettings
from orlop.backends.snapshots.backups import LocalBackups
from orlop.backends.snapshots.catalog import remove_payload
from orlop.backends.snapshots.options import CLONE_OPTIONS, FROM_OPTIONS, check_clone_options
from orlop.backends.snapshots.settings import LocalSettings
from orlop.core.model import BackendError, InvalidOption, Usage
from orlop.core.options import (
    Option,
    OptionSet,
    canonical_int,
    canonical_mode,
    one_of,
    parse_id,
)
from orlop.host import mounts
from orlop.host.tree import filesystem_usage, tree_usage

MOUNT_TYPES = ("tmpfs", "none", "bind", "ext4", "xfs", "btrfs")
BLOCK_TYPES = ("ext4", "xfs", "btrfs")
USAGE_WALK_SECONDS = 2.0


def _is_bind(options: dict[str, str]) -> bool:
    return options.get("type") == "bind" or "bind" in _mount_flags(options)


def _mount_flags(options: dict[str, str]) -> list[str]:
    return [flag for flag in options.get("o", "").split(",") if flag]


class DirectoryBackend:
    kind: ClassVar[str] = "directory"
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("uid", canonical_int(parse_id), "owner of the volume root"),
            Option("gid", canonical_int(parse_id), "group of the volume root"),
            Option("mode", canonical_mode, "permissions of the volume root, octal (0755)"),
            Option("type", one_of(*MOUNT_TYPES), "filesystem type to mount (Docker local)"),
            Option("device", help="what to mount: tmpfs, a host directory, a device or image"),
            Option("o", help="mount options, comma-separated (Docker local)"),
            *CLONE_OPTIONS,
        ]
    )
    settings_model: ClassVar[type[BackendSettings]] = LocalSettings
    capabilities = Capabilities(scope="local", snapshot=True, clone=True, restore=True)

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.settings = LocalSettings.parse(self.kind, context.settings)
        self.root = context.path("volumes")
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self.local = DirectorySnapshots(context, self.root, self.mountpoint)
        self.backups = LocalBackups(context, self.settings, self.kind, stager=self.local)
        self.local.clean_staging(self.backups.staging)
        self.capabilities = dataclasses.replace(self.capabilities, backup=self.backups.available)

    # Backend protocol -------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        check_clone_options(name, options)
        if "type" in options and any(key in options for key in FROM_OPTIONS):
            raise InvalidOption(
                "from_snapshot, from_volume and from_backup make plain directory volumes: "
                "drop type/device/o"
            )
        if any(key in options for key in FROM_OPTIONS):
            self.local.check_source(options, self.backups)
        # Docker local's rules: device needs type, type needs device, o needs both.
        mandatory = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
        for option, required in mandatory.items():
            for needed in required:
                if option in options and needed not in options:
                    raise InvalidOption(
                        f"option {option} requires option {needed} "
                        "(device and type go together; o needs both)"
                    )
        if "type" not in options:
            return
        device, fstype = options["device"], options["type"]
        if _is_bind(options):
            if not os.path.isabs(device) or not os.path.isdir(device):
                raise InvalidOption(
                    f"device {device!r} must be an existing host directory (absolute path) "
                    "for a bind mount"
                )
            if fstype not in ("none", "bind"):
                raise InvalidOption("a bind mount needs type=none (or type=bind)")
        elif fstype in BLOCK_TYPES:
            if not os.path.isabs(device) or not os.path.exists(device):
                raise InvalidOption(
                    f"device {device!r} must be an existing block device or image file "
                    f"(absolute path) for type={fstype}"
                )
            mode = os.stat(device).st_mode
            if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
                raise InvalidOption(f"device {device!r} is neither a block device nor a file")
        elif fstype == "none":
            raise InvalidOption("type=none is only for bind mounts: add o=bind")

    def mountpoint(self, volume: VolumeRef) -> str:
        return os.path.join(self.root, volume.name, "_data")

    def quick(self, operation: str, volume: VolumeRef) -> bool:
        # A plain directory: create is mkdir/chown/chmod, attach mkdir, detach nothing.
        # Mounts (any `type`) and remove (a walk of user data) go to a worker thread.
        if operation not in ("create", "attach", "detach"):
            return False
        if operation == "create" and self.local.copy_method == "btrfs subvolume":
            return False  # `btrfs subvolume create` is a process
        if any(key in volume.options for key in FROM_OPTIONS):
            return False  # a copy
        return "type" not in volume.options

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        data = self.mountpoint(volume)
        self._check_no_links(volume)  # before makedirs, which would follow a link
        if any(key in volume.options for key in FROM_OPTIONS):
            self.local.check_source(volume.options, self.backups)  # before anything is made
        os.makedirs(os.path.dirname(data), mode=0o701, exist_ok=True)
        self._check_no_links(volume)
        if "type" not in volume.options:
            if any(key in volume.options for key in FROM_OPTIONS):
                self.local.create_from(volume, self.backups)
            else:
                self.local.new_data(data)
            self._apply_ownership(data, volume.options)
            return {}
        os.makedirs(data, mode=0o755, exist_ok=True)
        # Mount once now: a wrong device, type or option fails the create, not a later
        # container start, and ownership lands on filesystems that keep it.
        self.attach(volume)
        self.detach(volume)
        return {}

    def remove(self, volume: VolumeRef) -> None:
        directory = os.path.join(self.root, volume.name)
        if not os.path.lexists(directory):
            return
        self._check_no_links(volume, ("",))
        if os.path.islink(directory):
            os.unlink(directory)  # a link in the volume's place: never what it points to
            return
        below = mounts.mounts_under(directory)
        for mounted in below:
            mounts.unmount(mounted)
        if below and mounts.mounts_under(directory):
            raise BackendError(f"{directory} still has mounts below it; not deleting")
        for entry in os.listdir(directory):  # _data, and a clone's or a restore's leftovers
            remove_payload(os.path.join(directory, entry))
        # A bind volume's host directory was unmounted above: only our own files go.
        shutil.rmtree(directory)  # deletes links inside, never follows them

    def attach(self, volume: VolumeRef) -> str:
        data = self.mountpoint(volume)
        self._check_no_links(volume)
        os.makedirs(data, mode=0o755, exist_ok=True)
        self._check_no_links(volume)
        options = volume.options
        if "type" not in options:
            return data
        if not mounts.is_mountpoint(data):
            fstype: str | None = options["type"]
            flags = _mount_flags(options)
            if _is_bind(options):
                fstype = None
                flags = flags if "bind" in flags else ["bind", *flags]
            mounts.mount(options["device"], data, fstype, flags)
            self._apply_ownership(data, options)
        return data

    def detach(self, volume: VolumeRef) -> None:
        if "type" in volume.options:
            mounts.unmount(self.mountpoint(volume))

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        if "type" not in volume.options:
            return False  # nothing to attach: a plain directory is always there
        return self.mountpoint(volume) in mounted

    def usage(self, volume: VolumeRef) -> Usage | None:
        data = self.mountpoint(volume)
        self._check_no_links(volume)
        if "type" in volume.options and not _is_bind(volume.options):
            if not mounts.is_mountpoint(data):
                return None
            return filesystem_usage(data)
        # A directory on the state dir's filesystem: its tree is what it uses, the
        # filesystem's free space (bytes and inodes) what it may still take.
        tree = tree_usage(data, USAGE_WALK_SECONDS)
        if tree is None:
            return None
        fs = os.statvfs(data)
        return Usage(
            used=tree.bytes,
            size=None,
            free=fs.f_bavail * fs.f_frsize,
            inodes_used=tree.inodes,
            inodes_free=fs.f_favail if fs.f_files else None,
        )

    def available_capacity(self, options: dict[str, str]) -> int | None:
        """Bytes free for new plain directory volumes (the filesystem of the state
        directory); None for a `type` mount, whose storage is not this host's to measure."""
        if "type" in options:
            return None
        fs = os.statvfs(self.root)
        return fs.f_bavail * fs.f_frsize

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [
            tool_check("mount", "mount"),
            tool_check("umount", "mount"),
            filesystem_check("tmpfs", "needed for type=tmpfs volumes"),
        ]

    # helpers ----------------------------------------------------------------------------
    def _check_no_links(
        self, volume: VolumeRef, parts: tuple[str, ...] = ("", "{name}", "_data")
    ) -> None:
        """Refuse a volume whose directories were replaced by symbolic links (or files).

        Everything from the driver's `volumes` directory down is Orlop's own: a link there
        would send the data, a chown or chmod, and Docker's bind mount out of the state
        directory, to wherever the link points."""
        path = self.root
        for part in parts:
            if part:  # ("" is the root itself: a trailing "/" would make lstat follow it)
                path = os.path.join(path, part.format(name=volume.name))
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return  # not made yet: nothing to follow
            if not stat.S_ISDIR(mode):
                what = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
                raise BackendError(
                    f"volume {volume.name}: {path} is {what}; Orlop does not follow links out "
                    "of its state directory. Remove it (and the volume), then create the "
                    "volume again"
                )

    @staticmethod
    def _apply_ownership(path: str, options: dict[str, str]) -> None:
        if not ("uid" in options or "gid" in options or "mode" in options):
            return
        # Through a descriptor opened without following a link: the directory checked is
        # the one changed, even if a link is swapped in meanwhile.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if "uid" in options or "gid" in options:
                os.fchown(fd, int(options.get("uid", "-1")), int(options.get("gid", "-1")))
            if "mode" in options:
                os.fchmod(fd, int(options["mode"], 8))
        finally:
            os.close(fd)

    # Snapshottable, Restorable, Scheduled, Backupable: the helpers' -----------------------
    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        return self.local.create_snapshot(volume, name)

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        return self.local.list_snapshots(volume)

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        return self.local.delete_snapshot(snapshot)

    def restore_snapshot(self, volume: VolumeRef, snapshot: str) -> dict[str, Any]:
        return self.local.restore_snapshot(volume, snapshot)

    def snapshot_schedule(self, volume: VolumeRef) -> str | None:
        return volume.options.get("snapshot_schedule") or self.settings.snapshot_schedule

    def stage_backup(self, volume: VolumeRef) -> str:
        return self.backups.stage_backup(volume)

    def send_backup(self, volume: VolumeRef, staged: str) -> dict[str, Any]:
        return self.backups.send_backup(volume, staged)

    def create_backup(self, volume: VolumeRef) -> dict[str, Any]:
        return self.backups.create_backup(volume)

    def list_backups(self, volume: str | None) -> list[dict[str, Any]]:
        return self.backups.list_backups(volume)

    def find_backup(self, backup: str) -> dict[str, Any]:
        return self.backups.find_backup(backup)

    def backup_options(self, backup: dict[str, Any]) -> dict[str, str]:
        return self.backups.backup_options(backup)
