"""DiskSnapshots: the Snapshottable part of a cloud backend — the cloud's snapshots of a
volume's disk, taken frozen (fsfreeze) while the volume is mounted here, so a snapshot holds
a clean filesystem and not just a crash-consistent one. Snapshots are found by labels, as
disks are; a snapshot Orlop did not make (another namespace) is never deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orlop.backends.base import VolumeRef
from orlop.backends.block import filesystem
from orlop.backends.cloud.api import (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
    LABEL_VOLUME,
    CloudSnapshots,
    Snapshot,
)
from orlop.backends.cloud.layer import CloudDisks
from orlop.core.model import Conflict, InvalidOption, validate_name
from orlop.host import fsfreeze


class DiskSnapshots:
    """Snapshots of the disks `disks` (the backend's CloudDisks) holds; `mountpoint` says
    where a volume is mounted on this host."""

    def __init__(self, kind: str, disks: CloudDisks, mountpoint: Callable[[VolumeRef], str]):
        self.kind = kind
        self.disks = disks
        self.mountpoint = mountpoint

    def cloud(self) -> CloudSnapshots:
        """The provider's snapshot calls; this kind's own message when it has none."""
        cloud = self.disks.cloud
        if not isinstance(cloud, CloudSnapshots):
            raise InvalidOption(f"driver kind {self.kind} cannot take snapshots")
        return cloud

    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        cloud = self.cloud()
        validate_name(name, "snapshot name")
        calls = self.disks.calls
        namespace = self.disks.settings.namespace
        if calls.find_snapshots(name=name):
            raise Conflict(f"a snapshot named {name} already exists: pick another name")
        disk = calls.must_get(volume)
        labels = {
            LABEL_MANAGED: "orlop",
            LABEL_NAMESPACE: namespace,
            LABEL_VOLUME: volume.name,
            LABEL_SNAPSHOT: name,
        }

        def take() -> Snapshot:
            return calls.call("snapshot", lambda: cloud.create_snapshot(disk, name, labels))

        target = self.mountpoint(volume)
        if filesystem.mounted_fs(target) is None:
            return take().as_dict()
        # A cloud fixes a snapshot's content when its create call returns: thaw right after.
        with fsfreeze.frozen(target):
            return take().as_dict()

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        self.cloud()  # this kind's own message when it has none
        found = self.disks.calls.find_snapshots(volume=volume)
        return sorted((s.as_dict() for s in found), key=lambda s: (s["created_at"], s["name"]))

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        cloud = self.cloud()
        found = self.disks.resolve_snapshot(snapshot, ours_only=True)
        namespace = self.disks.settings.namespace
        if found.labels.get(LABEL_NAMESPACE) != namespace:
            raise Conflict(
                f"snapshot {found.id} was not made by Orlop (namespace "
                f"{namespace}): delete it with the cloud's own tools"
            )
        self.disks.calls.call("delete snapshot", lambda: cloud.delete_snapshot(found))
        return found.as_dict()
