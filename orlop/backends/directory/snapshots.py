"""Snapshots, clones and restore for `directory` volumes (plain directories, no `type`).

How a copy is made depends on the state directory's filesystem (`orlop doctor` says which):

* btrfs: every new volume's `_data` is a subvolume; a snapshot is a read-only subvolume
  snapshot, a clone or a restore a writable one. Instant, and atomic: point-in-time even
  while containers write.
* elsewhere: a tree copy (`cp -a`) that reflinks each file where the filesystem can (xfs with
  reflink, …) and copies bytes where it cannot. File by file: a snapshot of a volume that is
  being written is not one point in time (use btrfs, or a loopfile volume, for databases).

Restore replaces `_data` while no container uses the volume:

    1. the snapshot is copied to `_data.restore-part`, renamed `_data.restore`
       (fail point restore.after_copy)
    2. `_data` is renamed `_data.old` (restore.after_swap)
    3. `_data.restore` is renamed `_data` (restore.after_replace), `_data.old` deleted

A per-volume intent file (`<state>/restoring/<name>`) marks a restore in progress; at start
`recover_restores()` rolls back before step 2 and forward after it: the volume is always
either the original or the snapshot, never a mix.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.snapshots.backups import LocalBackups
from orlop.backends.snapshots.catalog import SnapshotCatalog, fsync_directory, remove_payload
from orlop.core.failpoints import failpoint
from orlop.core.model import InvalidOption, NotFound
from orlop.core.progress import report
from orlop.host import btrfs
from orlop.host.clone import copy_tree, snapshot_method

log = logging.getLogger(__name__)


class DirectorySnapshots:
    """Snapshots, clones, restores and backup staging of directory volumes: a helper object
    the directory backend holds (and its backups' Stager). At construction it settles what a
    kill left: half-made snapshots, interrupted restores."""

    def __init__(
        self, context: BackendContext, root: str, mountpoint: Callable[[VolumeRef], str]
    ) -> None:
        self.context = context
        self.mountpoint = mountpoint
        self.snapshots = SnapshotCatalog(context.path("snapshots"))
        self.restoring = context.path("restoring")
        os.makedirs(self.restoring, mode=0o700, exist_ok=True)
        self.copy_method = snapshot_method(root)
        for leftover in self.snapshots.cleanup():
            log.info("removed %s, left by an interrupted snapshot", leftover)
        self.recover_restores()

    def clean_staging(self, staging: str) -> None:
        """Remove what interrupted backups left in `staging`."""
        for leftover in os.listdir(staging):
            log.info("removed %s, left by an interrupted backup", leftover)
            remove_payload(os.path.join(staging, leftover))

    # volume data ------------------------------------------------------------------------
    def new_data(self, data: str) -> None:
        """The empty `_data` of a new volume: a subvolume on btrfs, so it can be snapshotted."""
        if os.path.lexists(data):
            return
        if self.copy_method == "btrfs subvolume":
            btrfs.create(data)
            os.chmod(data, 0o755)
        else:
            os.mkdir(data, 0o755)

    def _copy_data(self, source: str, target: str, readonly: bool) -> str:
        """Copy the tree `source` to the new path `target`; return the method used."""
        if btrfs.is_subvolume(source):
            btrfs.snapshot(source, target, readonly)
            return "btrfs subvolume"
        os.mkdir(target, 0o755)
        copy_tree(source, target, report)
        return "copy" if self.copy_method == "copy" else "reflink"

    def _check_plain(self, volume: VolumeRef, doing: str) -> None:
        if "type" in volume.options:
            raise InvalidOption(
                f"volume {volume.name} mounts type={volume.options['type']}: {doing} works on "
                "plain directory volumes only (no type/device options)"
            )

    def check_source(self, options: dict[str, str], backups: LocalBackups) -> str:
        """The data a clone starts from; NotFound if its snapshot or volume does not exist."""
        if "from_backup" in options:
            backups.find_backup(options["from_backup"])
            return ""
        if "from_snapshot" in options:
            self.snapshots.get(options["from_snapshot"])  # NotFound with a helpful message
            return self.snapshots.data(options["from_snapshot"])
        source = self.mountpoint(VolumeRef(options["from_volume"], {}))
        if not os.path.isdir(source):
            raise NotFound(
                f"volume {options['from_volume']} to clone from does not exist in driver "
                f"{self.context.driver}"
            )
        return source

    def create_from(self, volume: VolumeRef, backups: LocalBackups) -> None:
        """Fill a new volume from `from_snapshot` or `from_volume` (a clone)."""
        options = volume.options
        data = self.mountpoint(volume)
        if os.path.lexists(data):
            return  # made before a crash: the service's CREATING row removes it anyway
        self._check_plain(volume, "a clone")
        source = self.check_source(options, backups)
        part = f"{data}.part"
        remove_payload(part)
        try:
            if "from_backup" in options:
                self.new_data(part)
                backups.restore_into(options["from_backup"], part)
            else:
                self._copy_data(source, part, readonly=False)
            failpoint("clone.after_copy")
            os.rename(part, data)
        except BaseException:
            with contextlib.suppress(Exception):
                remove_payload(part)
            raise

    # Stager ------------------------------------------------------------------------------
    def stage(self, volume: VolumeRef, staging: str) -> str:
        """A read-only snapshot of the volume's tree to back up."""
        self._check_plain(volume, "a backup")
        staged = os.path.join(staging, volume.name)
        remove_payload(staged)
        self._copy_data(self.mountpoint(volume), staged, readonly=True)
        return staged

    def unstage(self, name: str, staging: str) -> None:
        remove_payload(os.path.join(staging, name))

    def backup_tags(self, volume: VolumeRef) -> dict[str, str]:
        return {}

    # Snapshottable ----------------------------------------------------------------------
    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        self._check_plain(volume, "a snapshot")
        source = self.mountpoint(volume)
        facts = {"volume": volume.name, "state": "completed"}
        with self.snapshots.making(name, facts) as part:
            facts["method"] = self._copy_data(source, os.path.join(part, "data"), readonly=True)
            failpoint("snapshot.after_copy")
        return self.snapshots.get(name)

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        return self.snapshots.list(volume)

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        return self.snapshots.delete(snapshot)

    # Restorable -------------------------------------------------------------------------
    def restore_snapshot(self, volume: VolumeRef, snapshot: str) -> dict[str, Any]:
        self._check_plain(volume, "a restore")
        meta = self.snapshots.get(snapshot)
        data = self.mountpoint(volume)
        intent = os.path.join(self.restoring, volume.name)
        with open(intent, "w", encoding="utf-8") as file:
            file.write(snapshot)
            os.fsync(file.fileno())
        fsync_directory(self.restoring)
        try:
            remove_payload(f"{data}.restore-part")
            self._copy_data(self.snapshots.data(snapshot), f"{data}.restore-part", False)
            os.rename(f"{data}.restore-part", f"{data}.restore")
            failpoint("restore.after_copy")
            os.rename(data, f"{data}.old")
            fsync_directory(os.path.dirname(data))
            failpoint("restore.after_swap")
            os.rename(f"{data}.restore", data)
            fsync_directory(os.path.dirname(data))
            failpoint("restore.after_replace")
        finally:
            self._recover_restore(volume.name)
        return meta

    def recover_restores(self) -> None:
        """Finish or undo restores a crash interrupted (see the module's docstring)."""
        for name in os.listdir(self.restoring):
            self._recover_restore(name)

    def _recover_restore(self, name: str) -> None:
        data = self.mountpoint(VolumeRef(name, {}))
        try:
            remove_payload(f"{data}.restore-part")
            if os.path.lexists(data):
                # Before step 2 the original stands: drop the copy. After step 3: done.
                remove_payload(f"{data}.restore")
            elif os.path.lexists(f"{data}.restore"):
                os.rename(f"{data}.restore", data)  # between steps 2 and 3: forward
            elif os.path.lexists(f"{data}.old"):
                os.rename(f"{data}.old", data)  # nothing to go forward to: back
            if os.path.lexists(data):
                remove_payload(f"{data}.old")
        except OSError as error:
            log.error("volume %s: settling an interrupted restore: %s", name, error)
            return  # the intent stays: the next start tries again
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.restoring, name))
