"""Snapshots, clones and restore for `loopfile` volumes: copies of the image file.

The image is reflinked where the state directory's filesystem can (xfs with reflink, btrfs:
instant, blocks shared until written), else copied sparsely. While the volume is mounted its
filesystem is frozen (`fsfreeze`) around the copy, so the copy is crash-consistent: what a
power cut would have left, which every journaling filesystem and database recovers from.

Steps a kill can interrupt, and what the next start does:

    snapshot.after_freeze   the filesystem is frozen: a freeze intent file makes the next
                            start thaw it; the `.part-` snapshot is removed
    snapshot.after_copy     the copy is made, not yet renamed into the catalog: removed
    clone.after_copy        the clone's image is `<name>.img.part`: the service's CREATING row
                            removes the volume (image and `.part`)
    restore.after_copy      the snapshot's copy is `<name>.img.restore`: removed, the original
                            image untouched; the replace itself is one rename
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from orlop.backends.base import VolumeRef
from orlop.backends.block import filesystem
from orlop.backends.snapshots.backups import LocalBackups
from orlop.backends.snapshots.catalog import SnapshotCatalog, fsync_directory
from orlop.core.failpoints import failpoint
from orlop.core.model import Conflict, InvalidOption, NotFound
from orlop.core.options import format_size
from orlop.core.progress import report
from orlop.host import fsfreeze, loop, mounts
from orlop.host.clone import clone_file

if TYPE_CHECKING:
    from orlop.backends.base import BackendContext
    from orlop.backends.block.journal import Journal

log = logging.getLogger(__name__)


class ImageFiles(Protocol):
    """What the snapshots need of the loopfile provider: where the images are."""

    images: str

    def image(self, volume: VolumeRef) -> str: ...

    def detach_device(self, volume: VolumeRef) -> None: ...


class ImageSnapshots:
    """Snapshots, clones, restores and backup staging of loopfile volumes: a helper object
    the loopfile backend holds (and its backups' Stager). At construction it settles what a
    kill left: a frozen filesystem, half-made snapshots, an interrupted restore's copy."""

    def __init__(
        self,
        context: BackendContext,
        provider: ImageFiles,
        journal: Journal,
        mountpoint: Callable[[VolumeRef], str],
    ) -> None:
        self.context = context
        self.provider = provider
        self.journal = journal
        self.mountpoint = mountpoint
        self.snapshots = SnapshotCatalog(context.path("snapshots"))
        self.freezing = context.path("freezing")
        os.makedirs(self.freezing, mode=0o700, exist_ok=True)
        for name in os.listdir(self.freezing):  # a kill while a filesystem was frozen
            target = self.mountpoint(VolumeRef(name, {}))
            if filesystem.mounted_fs(target) is not None:
                log.warning("volume %s: thawing the filesystem a crash left frozen", name)
                fsfreeze.thaw(target)
            os.unlink(os.path.join(self.freezing, name))
        for leftover in self.snapshots.cleanup():
            log.info("removed %s, left by an interrupted snapshot", leftover)
        for leftover in glob.glob(os.path.join(self.provider.images, "*.img.restore")):
            log.info("removed %s, left by an interrupted restore", leftover)
            os.unlink(leftover)

    def clean_staging(self, staging: str) -> None:
        """Undo what interrupted backups left in `staging`: mounts, loop devices, image copies."""
        names = {entry.removesuffix(".img") for entry in os.listdir(staging)}
        for name in sorted(names):
            log.info("removing the staging of an interrupted backup of %s", name)
            self.unstage(name, staging)

    def unstage(self, name: str, staging: str) -> None:
        """Remove one volume's backup staging: its mount, loop device and image copy."""
        image = os.path.join(staging, f"{name}.img")
        target = os.path.join(staging, name)
        if mounts.is_mountpoint(target):
            mounts.unmount(target, lazy_if_busy=True)
        if os.path.exists(image):
            loop.detach_all(image)
            os.unlink(image)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(target)

    def _mounted(self, volume: VolumeRef) -> str | None:
        target = self.mountpoint(volume)
        return target if filesystem.mounted_fs(target) is not None else None

    def _copy_image(self, volume: VolumeRef, target: str) -> str:
        """Copy `volume`'s image to `target`, frozen if it is mounted; return the method."""
        image = self.provider.image(volume)
        if not os.path.exists(image):
            raise NotFound(f"volume {volume.name} has no image file ({image})")
        mounted = self._mounted(volume)
        if mounted is None:
            return clone_file(image, target, report)
        intent = os.path.join(self.freezing, volume.name)
        with open(intent, "w") as file:
            os.fsync(file.fileno())
        try:
            with fsfreeze.frozen(mounted):
                failpoint("snapshot.after_freeze")
                return clone_file(image, target, report)
        finally:
            os.unlink(intent)

    def check_source(self, options: dict[str, str], backups: LocalBackups) -> None:
        """A clone's source exists: checked before the volume is recorded."""
        if "from_backup" in options:
            backups.find_backup(options["from_backup"])
        elif "from_snapshot" in options:
            self.snapshots.get(options["from_snapshot"])
        elif "from_volume" in options:
            image = self.provider.image(VolumeRef(options["from_volume"], {}))
            if not os.path.exists(image):
                raise NotFound(
                    f"volume {options['from_volume']} to clone from does not exist in driver "
                    f"{self.context.driver}"
                )

    def create_from(self, volume: VolumeRef, backups: LocalBackups) -> dict[str, Any]:
        """The image of a new volume made from `from_snapshot` or `from_volume`."""
        options = volume.options
        image = self.provider.image(volume)
        record = {"image": image}
        if os.path.exists(image):
            return record
        self.check_source(options, backups)
        part = f"{image}.part"
        try:
            if "from_snapshot" in options:
                meta = self.snapshots.get(options["from_snapshot"])
                clone_file(self.snapshots.data(options["from_snapshot"]), part, report)
                fs = meta.get("fs")
                what = f"snapshot {options['from_snapshot']}"
            else:
                source = VolumeRef(options["from_volume"], {})
                self._copy_image(source, part)
                fs = self.journal.get(source.name).get("fs")
                what = f"volume {source.name}"
            copied, wanted = os.path.getsize(part), int(options.get("size", "0"))
            if wanted < copied:
                raise InvalidOption(
                    f"{what} is {format_size(copied)}: a volume made from it needs "
                    f"size={format_size(copied)} or more (it was given {format_size(wanted)})"
                )
            failpoint("clone.after_copy")
            if wanted > copied:
                os.truncate(part, wanted)  # the filesystem grows at the first mount
            os.rename(part, image)
            fsync_directory(self.provider.images)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            raise
        self.journal.update(
            volume.name,
            formatted=bool(fs),
            fs=fs,
            resizing=wanted if wanted > copied else None,
        )
        return record

    # Stager ------------------------------------------------------------------------------
    def stage(self, volume: VolumeRef, staging: str) -> str:
        """The volume's files as of now: a (frozen) copy of its image, mounted by itself."""
        image = os.path.join(staging, f"{volume.name}.img")
        target = os.path.join(staging, volume.name)
        self.unstage(volume.name, staging)
        try:
            self._copy_image(volume, image)
            device = loop.attach(image)
            fstype = filesystem.detect(device)
            if fstype is None:
                raise InvalidOption(f"volume {volume.name} was never used: nothing to back up")
            os.makedirs(target, mode=0o700, exist_ok=True)
            flags = ["nodev", "nosuid", "noexec"]
            if fstype == "xfs":
                flags.append("nouuid")  # the copy has the live volume's UUID
            # Mounted read-write: the filesystem replays its journal, as after a power cut.
            mounts.mount(device, target, fstype, flags)
        except BaseException:
            self.unstage(volume.name, staging)
            raise
        return target

    def backup_tags(self, volume: VolumeRef) -> dict[str, str]:
        fs = self.journal.get(volume.name).get("fs") or filesystem.fs_of(volume.options)
        return {"size": volume.options.get("size", ""), "fs": str(fs)}

    # Snapshottable ----------------------------------------------------------------------
    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "volume": volume.name,
            "state": "completed",
            "size": int(volume.options.get("size", "0")),
            "fs": self.journal.get(volume.name).get("fs") or filesystem.fs_of(volume.options),
            "consistency": "crash-consistent (frozen)" if self._mounted(volume) else "offline",
        }
        with self.snapshots.making(name, facts) as part:
            facts["method"] = self._copy_image(volume, os.path.join(part, "data"))
            failpoint("snapshot.after_copy")
        return self.snapshots.get(name)

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        return self.snapshots.list(volume)

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        return self.snapshots.delete(snapshot)

    # Restorable -------------------------------------------------------------------------
    def restore_snapshot(self, volume: VolumeRef, snapshot: str) -> dict[str, Any]:
        meta = self.snapshots.get(snapshot)
        if self._mounted(volume) is not None:
            raise Conflict(f"volume {volume.name} is mounted: restore it while unmounted")
        self.provider.detach_device(volume)  # a loop device a crash left behind
        image = self.provider.image(volume)
        restored = f"{image}.restore"
        try:
            clone_file(self.snapshots.data(snapshot), restored, report)
            failpoint("restore.after_copy")
            size = int(volume.options.get("size", "0"))
            copied = os.path.getsize(restored)
            if size > copied:
                os.truncate(restored, size)  # the volume grew after the snapshot
            self.journal.update(
                volume.name,
                formatted=bool(meta.get("fs")),
                fs=meta.get("fs"),
                usage=None,
                resizing=size if size > copied else None,
            )
            os.rename(restored, image)
            fsync_directory(self.provider.images)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(restored)
            raise
        failpoint("restore.after_replace")
        return meta
