"""CloudBackend: cloud disks with a filesystem — the shared block layer over `CloudDisks`,
plus snapshots (where the cloud has them), discovery of volumes other hosts made, and of
volumes other hosts deleted (Vanishing).

A cloud's backend is one line of configuration:

    class GceBackend(CloudBackend):
        cloud_provider = GceProvider

Its kind, options, settings and capabilities come from `layer.disks_spec(cloud_provider)`
(through `BlockBackend.spec()`); its device provider is `CloudDisks` over that cloud.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Closable, VolumeRef
from orlop.backends.block.backend import BlockBackend
from orlop.backends.block.provider import DeviceProvider, ProviderSpec
from orlop.backends.cloud.api import (
    CloudProvider,
)
from orlop.backends.cloud.layer import CloudDisks, disks_spec
from orlop.backends.cloud.snapshots import DiskSnapshots
from orlop.core.model import Conflict, VolumeLost
from orlop.host.mounter import HostMounter, Mounter

log = logging.getLogger(__name__)


class DisksOf:
    """`CloudBackend.provider_class`, where a BlockBackend names a provider class: the spec
    of CloudDisks over the class's `cloud_provider` — callable as that class was
    (`(context, devices=…, cloud=…)`), with its kind, options, capabilities, host_checks."""

    def __get__(self, instance: object | None, owner: type[CloudBackend]) -> Any:
        return disks_spec(owner.cloud_provider)


class CloudBackend(BlockBackend):
    cloud_provider: ClassVar[type[CloudProvider]]
    provider: CloudDisks  # a DeviceProvider, and more

    provider_class = DisksOf()  # compatibility: `provider_class(context, devices=…, cloud=…)`

    @classmethod
    def provider_spec(cls) -> ProviderSpec:
        return disks_spec(cls.cloud_provider)

    def __init__(
        self,
        context: BackendContext,
        provider: DeviceProvider | None = None,
        mounter: Mounter | None = None,
    ) -> None:
        super().__init__(context, provider)
        self.mounter: Mounter = mounter if mounter is not None else HostMounter()
        # Volumes whose leftover mount was dropped here (volume → holder then), until this
        # host attaches them again: a later refused Mount still says the volume was lost,
        # also when a discovery pass, not a Mount, found the loss.
        self._lost: dict[str, str] = {}
        self.snapshots = DiskSnapshots(self.kind, self.provider, self.mountpoint)

    def close(self) -> None:
        """At shutdown: end the provider's session with the cloud, if it keeps one."""
        cloud = self.provider.cloud
        if isinstance(cloud, Closable):
            cloud.close()

    # Mounts only while this host holds the disk ---------------------------------------------
    def attach(self, volume: VolumeRef) -> str:
        """Mount, having asked the cloud that this instance holds the disk — also when it is
        mounted here already: a disk preempted by another host (or taken while this one was
        down) leaves its kernel mount behind, and writes into it are lost. Such a leftover
        mount is dropped; then the usual attach refuses, naming the holder (or preempts)."""
        lost = self._drop_lost_mount(volume) or self._lost.get(volume.name)
        try:
            path = super().attach(volume)
        except Conflict as error:
            if lost is None:
                raise
            raise VolumeLost(
                f"volume {volume.name} was taken over by {lost} while mounted here; its "
                f"mount here was dropped. {error}"
            ) from None
        self._lost.pop(volume.name, None)
        return path

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        """Mounted here *and* held by this instance in the cloud (recovery asks this)."""
        if not super().is_attached(volume, mounted):
            return False
        return self._drop_lost_mount(volume) is None

    def release_if_lost(self, volume: VolumeRef) -> str | None:
        """Discovery's check of a volume mounted here (the Exclusive protocol): the listing
        it just made says who holds the disk; only a disk listed elsewhere is read again."""
        me = self.provider.identity().instance
        listed = self.provider.last_holders.get(volume.name)
        if listed is None or (me in listed and not self.provider.stale_at_listing(volume)):
            return None
        return self._drop_lost_mount(volume)

    def _drop_lost_mount(self, volume: VolumeRef) -> str | None:
        """Unmount a leftover mount of a disk the cloud shows elsewhere; who holds it, or
        None if nothing is mounted here or this instance still holds it."""
        target = self.mountpoint(volume)
        if self.mounter.mounted(target) is None:
            return None
        holder = self.provider.holder_elsewhere(volume)
        if holder is None:
            return None
        log.error(
            "volume %s is mounted here but the cloud shows its %s attached to %s: "
            "unmounting the leftover mount (writes into it would be lost)",
            volume.name,
            self.provider.word,
            holder,
        )
        self.mounter.unmount(target, lazy_if_busy=True)
        self.provider.attacher.fencing.forget(volume.name)  # drops the attachment file
        self._lost[volume.name] = holder
        return holder

    # Snapshottable: the cloud's snapshots of the volume's disk (snapshots.py) ---------------
    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        """Snapshot the volume; if it is mounted here, frozen for that instant (fsfreeze).
        A mount this host kept after another host took the disk over is dropped, not frozen
        (a freeze flushes it): the fence (docs/fencing.md)."""
        if self.mounter.mounted(self.mountpoint(volume)) is not None:
            holder = self._drop_lost_mount(volume)
            if holder is not None:
                raise VolumeLost(
                    f"volume {volume.name} was taken over by {holder} while mounted here; its "
                    "mount here was dropped, not frozen: take the snapshot on that host"
                )
        return self.snapshots.create_snapshot(volume, name)

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        return self.snapshots.list_snapshots(volume)

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        return self.snapshots.delete_snapshot(snapshot)

    # Discoverable: the cloud is the source of truth for which volumes exist -----------------
    @property
    def discover_interval(self) -> float:
        return self.provider.settings.discover_interval

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        return self.provider.list_volumes()

    # Vanishing: a disk deleted by another host (a CSI controller's DeleteVolume) ------------
    def vanished(self, volume: VolumeRef) -> bool:
        """The volume's disk no longer exists (or is being deleted): one read by its ID.
        A record without a disk ID (a create interrupted here) is recovery's, not gone."""
        disk_id = self.provider.recorded_id(volume)
        if not disk_id:
            return False
        disk = self.provider.get(disk_id)
        if disk is not None and disk.state != "deleting":
            return False
        self.provider.files.drop_attachment(volume.name)
        self.provider.files.drop_token(volume.name)
        self.journal.drop(volume.name)
        with contextlib.suppress(OSError):  # an empty mountpoint directory; never a mount
            os.rmdir(self.mountpoint(volume))
        return True
