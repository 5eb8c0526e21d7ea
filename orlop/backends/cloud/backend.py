"""CloudBackend: cloud disks with a filesystem — the shared block layer over `CloudDisks`,
plus snapshots (where the cloud has them), discovery of volumes other hosts made, and of
volumes other hosts deleted (Vanishing).

A cloud's backend is one line of configuration:

    class GceBackend(CloudBackend):
        cloud_provider = GceProvider
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Closable, VolumeRef
from orlop.backends.block import filesystem
from orlop.backends.block.backend import BlockBackend
from orlop.backends.block.provider import DeviceProvider
from orlop.backends.cloud.api import (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
    LABEL_VOLUME,
    CloudProvider,
    CloudSnapshots,
)
from orlop.backends.cloud.layer import LAYER_OPTIONS, CloudDisks
from orlop.core.model import Conflict, InvalidOption, VolumeLost, validate_name
from orlop.core.options import OptionSet
from orlop.host.mounter import HostMounter, Mounter
from orlop.host.run import run

log = logging.getLogger(__name__)


class CloudBackend(BlockBackend):
    cloud_provider: ClassVar[type[CloudProvider]]
    provider: CloudDisks  # type: ignore[assignment]  # a DeviceProvider, and more

    def __init_subclass__(cls, **kwargs: Any) -> None:
        cloud = cls.__dict__.get("cloud_provider")
        if cloud is not None:
            snapshots = all(
                hasattr(cloud, method) for method in ("create_snapshot", "find_snapshots")
            )
            disks: type[DeviceProvider] = type(
                f"{cloud.__name__}Disks",
                (CloudDisks,),
                {
                    "cloud_class": cloud,
                    "kind": cloud.kind,
                    "options": OptionSet([*cloud.options.options.values(), *LAYER_OPTIONS]),
                    "settings_model": cloud.settings_model,
                    "capabilities": dataclasses.replace(
                        CloudDisks.capabilities, snapshot=snapshots
                    ),
                },
            )
            cls.provider_class = disks
        super().__init_subclass__(**kwargs)

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
        if listed is None or me in listed:
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
        self.provider.files.drop_attachment(volume.name)
        self._lost[volume.name] = holder
        return holder

    # Snapshottable: the cloud's snapshots of the volume's disk ------------------------------
    def _snapshots(self) -> CloudSnapshots:
        cloud = self.provider.cloud
        if not isinstance(cloud, CloudSnapshots):
            raise InvalidOption(f"driver kind {self.kind} cannot take snapshots")
        return cloud

    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        """Snapshot the volume; if it is mounted here, frozen for that instant (fsfreeze), so the
        snapshot holds a clean filesystem and not just a crash-consistent one."""
        cloud = self._snapshots()
        validate_name(name, "snapshot name")
        namespace = self.provider.settings.namespace
        if self.provider.calls.find_snapshots(name=name):
            raise Conflict(f"a snapshot named {name} already exists: pick another name")
        disk = self.provider.must_get(volume)
        labels = {
            LABEL_MANAGED: "orlop",
            LABEL_NAMESPACE: namespace,
            LABEL_VOLUME: volume.name,
            LABEL_SNAPSHOT: name,
        }
        target = self.mountpoint(volume)
        if filesystem.mounted_fs(target) is None:
            made = self.provider.api("snapshot", cloud.create_snapshot, disk, name, labels)
            return made.as_dict()
        # A cloud fixes a snapshot's content when its create call returns: thaw right after.
        run(["fsfreeze", "--freeze", target], timeout=60)
        try:
            made = self.provider.api("snapshot", cloud.create_snapshot, disk, name, labels)
        finally:
            run(["fsfreeze", "--unfreeze", target], timeout=60)
        return made.as_dict()

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        self._snapshots()  # this kind's own message when it has none
        found = self.provider.calls.find_snapshots(volume=volume)
        return sorted((s.as_dict() for s in found), key=lambda s: (s["created_at"], s["name"]))

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        cloud = self._snapshots()
        found = self.provider.resolve_snapshot(snapshot, ours_only=True)
        if found.labels.get(LABEL_NAMESPACE) != self.provider.settings.namespace:
            raise Conflict(
                f"snapshot {found.id} was not made by Orlop (namespace "
                f"{self.provider.settings.namespace}): delete it with the cloud's own tools"
            )
        self.provider.api("delete snapshot", cloud.delete_snapshot, found)
        return found.as_dict()

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
