"""Loop-file provider: each volume an image file under the driver's state directory.

    <state>/images/<name>.img        sparse by default; fully allocated with preallocate=true

Attach is a loop device on the image (found again after a crash by its backing file);
grow enlarges the file and tells the loop device (`losetup --set-capacity`). The shared
block layer (`BlockBackend`) formats, mounts and grows the filesystem on top.

Options: `size` (driver default, else 10G), `preallocate` (false), plus the block layer's
`fs`, `mkfs_options` and `mount_options`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef, tool_check
from orlop.backends.block.backend import BlockBackend
from orlop.backends.loopfile.snapshots import ImageSnapshots
from orlop.backends.settings import BackendSettings
from orlop.backends.snapshots.backups import LocalBackups
from orlop.backends.snapshots.options import CLONE_OPTIONS, check_clone_options
from orlop.backends.snapshots.settings import LoopFileSettings
from orlop.core.model import BackendError, InvalidOption
from orlop.core.options import (
    GIB,
    MAX_SIZE,
    Option,
    OptionSet,
    bounded_size,
    canonical_bool,
    format_size,
)
from orlop.host import loop

DEFAULT_SIZE = 10 * GIB


def canonical_loop_size(value: str) -> str:
    """At least the smallest filesystem's minimum (ext4, 16M); each fs checks its own."""
    return str(bounded_size(value, 16 * 1024**2, MAX_SIZE, "a loop-file volume"))


class LoopFileProvider:
    kind: ClassVar[str] = "loopfile"
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("size", canonical_loop_size, "size of the volume, 16M or more (default 10G)"),
            Option(
                "preallocate",
                canonical_bool,
                "true: allocate the whole image now (needs that much free space); "
                "false (default): a sparse image that takes space as data is written",
            ),
            *CLONE_OPTIONS,
        ]
    )
    settings_model: ClassVar[type[BackendSettings]] = LoopFileSettings
    capabilities: Capabilities = Capabilities(
        scope="local", snapshot=True, clone=True, restore=True
    )

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.images = context.path("images")
        os.makedirs(self.images, mode=0o700, exist_ok=True)

    # helpers ----------------------------------------------------------------------------
    def image(self, volume: VolumeRef) -> str:
        return os.path.join(self.images, f"{volume.name}.img")

    def size(self, options: dict[str, str]) -> int:
        return int(options.get("size", DEFAULT_SIZE))

    @staticmethod
    def preallocated(options: dict[str, str]) -> bool:
        return options.get("preallocate") == "true"

    def free_space(self) -> int:
        fs = os.statvfs(self.images)
        return fs.f_bavail * fs.f_frsize

    def _check_room(self, needed: int, what: str) -> None:
        free = self.free_space()
        if needed > free:
            raise InvalidOption(
                f"{what} needs {format_size(needed)} but the state directory {self.images} has "
                f"only {format_size(free)} free: choose a smaller size, free some space, or use "
                "a sparse image (preallocate=false)"
            )

    # DeviceProvider ---------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        check_clone_options(name, options)
        if self.preallocated(options):
            size = self.size(options)
            self._check_room(size, f"size {format_size(size)} with preallocate=true")

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        image = self.image(volume)
        record = {"image": image}
        if os.path.exists(image):
            return record  # made before a crash: the service's CREATING row removes it anyway
        size = self.size(volume.options)
        # Built under another name and renamed: an image at the real name is always complete.
        partial = f"{image}.part"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _allocate(fd, 0, size, self.preallocated(volume.options))
            os.fsync(fd)
        except OSError as error:
            os.close(fd)
            os.unlink(partial)
            raise _allocation_error(error, size, image) from None
        os.close(fd)
        os.rename(partial, image)
        return record

    def remove(self, volume: VolumeRef) -> None:
        image = self.image(volume)
        loop.detach_all(image)
        for path in (image, f"{image}.part"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def attach_device(self, volume: VolumeRef) -> str:
        image = self.image(volume)
        if not os.path.exists(image):
            raise BackendError(f"the image file {image} of volume {volume.name} is missing")
        device = loop.attach(image)
        if loop.size_of(device) != _sectors(os.path.getsize(image)):
            loop.refresh_capacity(device)  # the file grew while a crash kept the device
        return device

    def detach_device(self, volume: VolumeRef) -> None:
        loop.detach_all(self.image(volume))

    def device_path(self, volume: VolumeRef) -> str | None:
        devices = loop.devices_for(self.image(volume))
        return devices[0] if devices else None

    def grow(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        image = self.image(volume)
        current = os.path.getsize(image)
        if size < current:
            raise InvalidOption(
                f"volume {volume.name} is {format_size(current)}: shrinking it to "
                f"{format_size(size)} is not supported"
            )
        if size > current:
            preallocate = self.preallocated(volume.options)
            if preallocate:
                self._check_room(size - current, f"growing {volume.name} to {format_size(size)}")
            fd = os.open(image, os.O_WRONLY)
            try:
                _allocate(fd, current, size - current, preallocate)
                os.fsync(fd)
            except OSError as error:
                raise _allocation_error(error, size, image) from None
            finally:
                os.close(fd)
        for device in loop.devices_for(image):
            if loop.size_of(device) != _sectors(size):
                loop.refresh_capacity(device)
        return {"image": image}

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        return {
            "image": self.image(volume),
            "size": self.size(volume.options),
            "preallocated": self.preallocated(volume.options),
        }

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [
            tool_check("losetup", "mount"),
            Check(
                "loop devices",
                os.path.exists("/dev/loop-control"),
                "/dev/loop-control",
                "modprobe loop",
            ),
        ]


class LoopFileBackend(BlockBackend):
    """Block volumes on loop-mounted image files: the `loopfile` backend kind."""

    provider_class = LoopFileProvider
    provider: LoopFileProvider

    settings: LoopFileSettings

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.local = ImageSnapshots(context, self.provider, self.journal, self.mountpoint)
        self.backups = LocalBackups(context, self.settings, self.kind, stager=self.local)
        self.local.clean_staging(self.backups.staging)
        self.capabilities = dataclasses.replace(self.capabilities, backup=self.backups.available)

    def validate(self, name: str, options: dict[str, str]) -> None:
        super().validate(name, options)
        self.local.check_source(options, self.backups)

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        if "from_backup" in volume.options:
            self.journal.reset(volume.name)
            return self._create_from_backup(volume)
        if "from_snapshot" not in volume.options and "from_volume" not in volume.options:
            return super().create(volume)
        self.journal.reset(volume.name)
        return self.local.create_from(volume, self.backups)

    def _create_from_backup(self, volume: VolumeRef) -> dict[str, Any]:
        """A new volume (formatted as usual) with a backup's files restored into it."""
        record = self.provider.create(volume)
        self.backups.find_backup(volume.options["from_backup"])
        target = self.attach(volume)
        try:
            self.backups.restore_into(volume.options["from_backup"], target)
        finally:
            self.detach(volume)
        return record

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


def _sectors(size: int) -> int:
    """What a loop device shows of a file of `size` bytes: whole 512-byte sectors."""
    return size // 512 * 512


def _allocate(fd: int, offset: int, length: int, preallocate: bool) -> None:
    if preallocate:
        os.posix_fallocate(fd, offset, length)
    else:
        os.ftruncate(fd, offset + length)


def _allocation_error(error: OSError, size: int, image: str) -> BackendError:
    if error.errno == errno.ENOSPC:
        return BackendError(f"no space left to allocate {format_size(size)} for {image}")
    if error.errno == errno.EFBIG:
        return BackendError(
            f"{format_size(size)} is larger than the biggest file the state directory's "
            f"filesystem can hold ({image})"
        )
    return BackendError(f"allocating {image}: {error.strerror or error}")
