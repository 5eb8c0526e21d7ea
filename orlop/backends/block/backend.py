"""BlockBackend: a Backend over any DeviceProvider, with one shared filesystem layer.

A provider makes a block device exist and appear on this host; this class does the rest,
the same way for every provider:

    create  = provider.create
    attach  = provider.attach_device → detect, or format on first use → mount (nodev,nosuid)
    detach  = unmount → provider.detach_device
    resize  = provider.grow → grow the filesystem online (or at the next attach)
    remove  = unmount, detach (if a crash left them) → provider.remove

A raw block volume (`volume_mode=block`, CSI's block access type) skips the filesystem layer:
its attach is `attach_raw` (the device, never probed or formatted, bound at the mountpoint,
which is then a device file, not a directory); detach and remove are the same as for others.

Use it by naming the provider in a subclass; kind, options and capabilities follow, read
from the provider's class attributes by `spec()` (one place, no instance needed):

    class LoopFileBackend(BlockBackend):
        provider_class = LoopFileProvider

Crash safety: the service records the volume's state before each call, every step here is
idempotent, and the steps inside attach that matter after a crash (a format in progress, a
grow in progress) are recorded in a per-volume journal first. `failpoint("block.<step>")`
marks each step so tests can kill the daemon there:

    block.after_create, block.after_attach_device, block.before_format, block.after_format,
    block.after_mount, block.after_unmount, block.after_detach_device, block.before_remove,
    block.after_grow_device, block.after_grow_fs
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import Any, ClassVar, Generic, TypeVar

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef
from orlop.backends.block import filesystem
from orlop.backends.block.journal import Journal
from orlop.backends.block.provider import DeviceProvider, ProviderSpec
from orlop.backends.settings import BackendSettings
from orlop.core.failpoints import failpoint
from orlop.core.model import BackendError, InvalidOption, Usage
from orlop.core.options import OptionSet, format_size
from orlop.host import mounts

log = logging.getLogger(__name__)


class BlockSettings(BackendSettings):
    """The block layer's driver settings; every provider's settings model includes them."""

    # Let volumes ask for dev/suid mounts: a host admin's decision, never a volume's.
    allow_suid_dev: bool = False


T = TypeVar("T")


class FromSpec(Generic[T]):
    """A block backend's class attribute (kind, options, settings_model, capabilities) read
    from its class's `spec()`, so `backend_class(kind).capabilities` needs no instance; an
    instance may set its own (capabilities that follow its settings)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object | None, owner: type[BlockBackend]) -> T:
        value: T = getattr(owner.spec(), self.name)
        return value


class BlockBackend:
    """The block layer over the DeviceProvider its class names (`provider_class`), or the
    one handed in; the kind's facts are decided once, in `spec()`."""

    provider_class: ClassVar[type[DeviceProvider]]
    kind: FromSpec[str] = FromSpec()
    options: FromSpec[OptionSet] = FromSpec()
    settings_model: FromSpec[type[BackendSettings]] = FromSpec()
    capabilities: FromSpec[Capabilities] = FromSpec()

    @classmethod
    def provider_spec(cls) -> ProviderSpec:
        """What the provider makes of this kind (a subclass with another source of providers,
        `CloudBackend`, says it here)."""
        return ProviderSpec.of(cls.provider_class)

    @classmethod
    def spec(cls) -> ProviderSpec:
        """The kind's facts: the provider's, with the filesystem layer's options, and resize
        and quota (a block device's size is a hard limit)."""
        return _block_spec(cls)

    def __init__(self, context: BackendContext, provider: DeviceProvider | None = None) -> None:
        self.context = context
        self.provider = provider if provider is not None else self.spec().make(context)
        # A provider may decide its capabilities per instance (from settings): follow it.
        self.capabilities = _with_block_layer(self.provider.capabilities)
        self.journal = Journal(context.path("block"))
        self.settings = self.settings_model.parse(self.provider.kind, context.settings)
        # Every provider's settings include the block layer's (BlockSettings, CloudSettings).
        self.allow_suid_dev = getattr(self.settings, "allow_suid_dev", False) is True
        self.mounts_root = context.path("mounts")
        os.makedirs(self.mounts_root, mode=0o700, exist_ok=True)

    # Backend protocol -------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        size = int(options["size"]) if options.get("size", "").isdigit() else None
        filesystem.check(options, size, self.allow_suid_dev)
        self.provider.validate(name, options)

    def mountpoint(self, volume: VolumeRef) -> str:
        return os.path.join(self.mounts_root, volume.name)

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        # A journal left by an earlier volume of this name must not say "formatted".
        self.journal.reset(volume.name)
        record = self.provider.create(volume)
        failpoint("block.after_create")
        return record

    def remove(self, volume: VolumeRef) -> None:
        # After a crash the volume may still be mounted or its device attached: undo both.
        self._unmount(volume)
        self.provider.detach_device(volume)
        failpoint("block.before_remove")
        self.provider.remove(volume)
        self.journal.drop(volume.name)
        with contextlib.suppress(FileNotFoundError):
            if filesystem.is_raw(volume.options):
                os.remove(self.mountpoint(volume))  # the device file attach_raw made
            else:
                os.rmdir(self.mountpoint(volume))

    def attach(self, volume: VolumeRef) -> str:
        if filesystem.is_raw(volume.options):
            return self.attach_raw(volume)
        target = self.mountpoint(volume)
        if filesystem.mounted_fs(target) is None:
            device = self.provider.attach_device(volume)
            failpoint("block.after_attach_device")
            try:
                fstype = self._ensure_filesystem(volume, device)
                self._grow_unmounted(volume, device, fstype)
                os.makedirs(target, mode=0o755, exist_ok=True)
                filesystem.mount(
                    device,
                    target,
                    fstype,
                    volume.options.get("mount_options", ""),
                    self.allow_suid_dev,
                )
            except Exception:
                self._detach_after_failed_mount(volume)
                raise
            failpoint("block.after_mount")
        self._finish_resize(volume, target)
        return target

    def detach(self, volume: VolumeRef) -> None:
        self._unmount(volume)
        failpoint("block.after_unmount")
        self.provider.detach_device(volume)
        failpoint("block.after_detach_device")

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        return self.mountpoint(volume) in mounted

    def usage(self, volume: VolumeRef) -> Usage | None:
        if filesystem.is_raw(volume.options):
            return None  # what a raw device holds is its user's: only its size is known
        target = self.mountpoint(volume)
        if filesystem.mounted_fs(target) is not None:
            return filesystem.usage(target)
        # Detached: what the filesystem held at its last unmount (the device is not here).
        entry = self.journal.get(volume.name)
        cached = entry.get("usage")
        if isinstance(cached, dict):
            return Usage(**cached)
        size = volume.options.get("size", "")
        if not entry.get("formatted") and not entry.get("formatting") and size.isdigit():
            return Usage(used=0, size=int(size), free=None)  # never formatted: nothing in it
        return None

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        return {"fs": filesystem.fs_of(volume.options), **self.provider.describe(volume)}

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [*cls.spec().host_checks(), *filesystem.host_checks()]

    # Resizable --------------------------------------------------------------------------
    def resize(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        """Grow the device to `size` bytes and the filesystem with it (online if mounted)."""
        current = int(volume.options["size"]) if volume.options.get("size", "").isdigit() else 0
        if size < current:
            raise InvalidOption(
                f"volume {volume.name} is {format_size(current)}; shrinking it to "
                f"{format_size(size)} is not supported (filesystems grow online but cannot "
                "shrink safely): create a smaller volume and copy the data"
            )
        filesystem.check(volume.options, size, self.allow_suid_dev)
        self.journal.update(volume.name, resizing=size, usage=None)
        try:
            record = self.provider.grow(volume, size)
        except Exception:
            self.journal.update(volume.name, resizing=None)
            raise
        failpoint("block.after_grow_device")
        if filesystem.is_raw(volume.options):
            self.journal.update(volume.name, resizing=None)  # no filesystem to grow
            return record
        target = self.mountpoint(volume)
        if filesystem.mounted_fs(target) is not None:
            try:
                filesystem.grow(target)
            except BackendError as error:
                raise BackendError(
                    f"the device of {volume.name} grew to {format_size(size)}, but its "
                    f"filesystem did not: {error}"
                ) from None
            self.journal.update(volume.name, resizing=None)
            failpoint("block.after_grow_fs")
        else:
            log.info(
                "volume %s is not mounted: its filesystem grows at the next mount", volume.name
            )
        return record

    # raw block volumes (CSI's block access type) and capacity ----------------------------
    def attach_raw(self, volume: VolumeRef) -> str:
        """Attach a raw block volume: its device, never probed, formatted or mounted (what
        is on it is its user's), bound onto the file at its mountpoint — a path that stays
        the same across restarts, as the device's name may not. Idempotent."""
        target = self.mountpoint(volume)
        if filesystem.mounted_fs(target) is None:
            device = self.provider.attach_device(volume)
            failpoint("block.after_attach_device")
            try:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
                mounts.mount(device, target, options=["bind"])
            except Exception:
                self._detach_after_failed_mount(volume)
                raise
        return target

    def available_capacity(self, options: dict[str, str]) -> int | None:
        """Bytes free for new volumes where the provider can tell (a loop file's state
        directory); None where it cannot (a cloud: its quotas are not a free-space figure)."""
        free_space = getattr(self.provider, "free_space", None)
        return int(free_space()) if callable(free_space) else None

    # steps ------------------------------------------------------------------------------
    def _ensure_filesystem(self, volume: VolumeRef, device: str) -> str:
        """The filesystem type on `device`, formatting it first if this is its first use."""
        wanted = filesystem.fs_of(volume.options)
        entry = self.journal.get(volume.name)
        interrupted = bool(entry.get("formatting"))
        if interrupted:
            # Our own format never finished, so nothing was ever stored here: start over.
            log.warning("volume %s: finishing a format a crash interrupted", volume.name)
            filesystem.wipe(device)
            detected = None
        else:
            detected = filesystem.detect(device)
        if detected is not None:
            if detected != wanted:
                log.warning(
                    "volume %s asks for %s but %s holds %s: mounting it as it is",
                    volume.name,
                    wanted,
                    device,
                    detected,
                )
            if not entry.get("formatted"):
                self.journal.update(volume.name, formatted=True, fs=detected)
            return detected
        if entry.get("formatted"):
            raise BackendError(
                f"volume {volume.name} was formatted as {entry.get('fs', wanted)} but its device "
                f"{device} holds no filesystem now: refusing to format it again, which would "
                "lose its data; check the device (or remove the volume)"
            )
        # Never formatted by our record, and blkid found nothing on a device that reads: format
        # only if it reads back blank too, checked before "formatting" is journaled (a format
        # the journal says was cut short is redone over whatever the device holds).
        if not interrupted:
            filesystem.require_blank(device)
        self.journal.update(volume.name, formatting=True)
        failpoint("block.before_format")
        filesystem.make(device, wanted, volume.options.get("mkfs_options", ""), force=interrupted)
        failpoint("block.after_format")
        self.journal.update(volume.name, formatting=None, formatted=True, fs=wanted)
        log.info("volume %s: formatted %s as %s", volume.name, device, wanted)
        return wanted

    def _unmount(self, volume: VolumeRef) -> None:
        target = self.mountpoint(volume)
        if filesystem.mounted_fs(target) is None:
            return
        with contextlib.suppress(OSError):  # usage is a nicety; the unmount is what matters
            self.journal.update(volume.name, usage=filesystem.usage(target).as_dict())
        filesystem.unmount(target)

    def _detach_after_failed_mount(self, volume: VolumeRef) -> None:
        """Give the device back after a mount failed; the mount's error is what the user
        sees, so a failure here is logged (the service's recovery detaches again)."""
        try:
            self.detach(volume)
        except Exception as error:
            log.error(
                "volume %s: detaching after the failed mount failed too: %s", volume.name, error
            )

    def _grow_unmounted(self, volume: VolumeRef, device: str, fstype: str) -> None:
        pending = self.journal.get(volume.name).get("resizing")
        if not isinstance(pending, int):
            return
        try:
            self.provider.grow(volume, pending)
            grown = filesystem.grow_unmounted(device, fstype)
        except Exception as error:
            # Mount the data anyway; the grow is retried after mounting and at the next attach.
            log.error("volume %s: growing before the mount failed: %s", volume.name, error)
            return
        if grown:
            self.journal.update(volume.name, resizing=None)

    def _finish_resize(self, volume: VolumeRef, target: str) -> None:
        pending = self.journal.get(volume.name).get("resizing")
        if not isinstance(pending, int):
            return
        log.info("volume %s: finishing a grow to %s", volume.name, format_size(pending))
        try:
            self.provider.grow(volume, pending)
            filesystem.grow(target)
        except Exception as error:
            # The data is mounted and usable; the grow is retried at the next attach.
            log.error("volume %s: finishing the grow failed: %s", volume.name, error)
            return
        self.journal.update(volume.name, resizing=None)


def _with_block_layer(capabilities: Capabilities) -> Capabilities:
    return dataclasses.replace(capabilities, resize=True, quota=True)


_SPECS: dict[type[BlockBackend], ProviderSpec] = {}  # made once per class (help texts ask often)


def _block_spec(backend: type[BlockBackend]) -> ProviderSpec:
    spec = _SPECS.get(backend)
    if spec is None:
        provider = backend.provider_spec()
        spec = _SPECS[backend] = provider.replace(
            options=OptionSet([*provider.options.options.values(), *filesystem.OPTIONS]),
            capabilities=_with_block_layer(provider.capabilities),
        )
    return spec
