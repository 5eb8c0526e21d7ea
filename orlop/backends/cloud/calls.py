"""CloudCalls: every call the layer makes to a provider, each with the layer's retry rules
(`waiting.call_with_retries`) and a typed result. Reads repeat on transient faults; writes
repeat only on throttling (a write that failed may have happened: the caller examines it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.api import (
    CloudProvider,
    CloudSettings,
    CloudSnapshots,
    Disk,
    DiskSpec,
    Identity,
    Snapshot,
    record_of,
)
from orlop.backends.cloud.waiting import call_with_retries
from orlop.core.model import BackendError, InvalidOption
from orlop.ops.counters import counted_provider_call

T = TypeVar("T")
log = logging.getLogger(__name__)


def recorded_id(volume: VolumeRef) -> str | None:
    """The disk ID in the volume's record, if it has one ("volume_id": EBS records written
    before the cloud-disk layer)."""
    found = volume.record.get("disk_id") or volume.record.get("volume_id")
    return str(found) if found else None


class CloudCalls:
    """One provider's calls, retried and typed; the identity read once and cached."""

    def __init__(
        self, cloud: CloudProvider, settings: CloudSettings, driver: str | None = None
    ) -> None:
        self.cloud = cloud
        self.driver = driver  # whose reachability each attempt tells (None: nobody's)
        self.settings = settings
        self.word = cloud.disk_word
        self.refuses_second_attach = cloud.refuses_second_attach
        self._identity: Identity | None = None
        self._identity_lock = threading.Lock()

    def call(self, what: str, function: Callable[[], T], repeatable: bool = False) -> T:
        # metrics and reachability: each attempt
        watch = f"{self.cloud.kind} {what}" if repeatable else ""  # reads: never long
        counted = counted_provider_call(self.cloud.kind, function, self.driver, watch)
        return call_with_retries(self.settings, what, counted, repeatable)

    # reads ----------------------------------------------------------------------------------
    def identity(self) -> Identity:
        with self._identity_lock:
            if self._identity is None:
                self._identity = self.call("identity", self.cloud.identity, repeatable=True)
            return self._identity

    def get(self, disk_id: str) -> Disk | None:
        return self.call("get disk", lambda: self.cloud.get_disk(disk_id), repeatable=True)

    def find(self, volume: str | None = None) -> list[Disk]:
        namespace = self.settings.namespace
        return self.call(
            "find disks", lambda: self.cloud.find_disks(namespace, volume), repeatable=True
        )

    def disk_id(self, volume: VolumeRef) -> str:
        disk_id = recorded_id(volume)
        if not disk_id:
            raise BackendError(f"volume {volume.name} has no {self.word} ID in its record")
        return disk_id

    def must_get(self, volume: VolumeRef) -> Disk:
        disk_id = self.disk_id(volume)
        disk = self.get(disk_id)
        if disk is None and volume.record.get("adopted"):
            disk = self._made_again(volume, disk_id)
        if disk is None:
            raise BackendError(
                f"{self.word} {disk_id} of volume {volume.name} no longer exists in the cloud; "
                "remove the volume from Orlop"
            )
        return disk

    def _made_again(self, volume: VolumeRef, gone: str) -> Disk | None:
        """An adopted volume (another host made it) whose disk is gone, and one disk of its
        name in the namespace now: that host undid a create this host had already listed,
        and made the disk again. Follow it (the record changes in place: the service saves
        it with the next change); with none or several, the caller's error stands."""
        found = [d for d in self.find(volume.name) if d.state != "deleting"]
        if len(found) != 1:
            return None
        log.info(
            "%s %s of %s is gone; %s carries the name now: using it",
            self.word,
            gone,
            volume.name,
            found[0].id,
        )
        volume.record.update({**record_of(found[0]), "adopted": True})
        return found[0]

    # writes ---------------------------------------------------------------------------------
    def create(self, spec: DiskSpec) -> Disk:
        identity = self.identity()
        return self.call("create disk", lambda: self.cloud.create_disk(spec, identity))

    def delete(self, disk: Disk) -> None:
        self.call("delete disk", lambda: self.cloud.delete_disk(disk))

    def set_labels(self, what: str, disk: Disk, labels: Mapping[str, str | None]) -> None:
        self.call(what, lambda: self.cloud.set_labels(disk, labels), repeatable=True)

    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        return self.call("device name", lambda: self.cloud.device_name(disk, identity))

    def attach(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        self.call("attach", lambda: self.cloud.attach_disk(disk, identity, device_name))

    def detach(self, what: str, disk: Disk, instance: str, force: bool) -> None:
        self.call(what, lambda: self.cloud.detach_disk(disk, instance, force))

    def resize(self, disk: Disk, size: int) -> None:
        self.call("resize", lambda: self.cloud.resize_disk(disk, size))

    # snapshots ------------------------------------------------------------------------------
    def snapshots(self) -> CloudSnapshots:
        if not isinstance(self.cloud, CloudSnapshots):
            raise InvalidOption(f"driver kind {self.cloud.kind} has no snapshots")
        return self.cloud

    def find_snapshots(self, volume: str | None = None, name: str | None = None) -> list[Snapshot]:
        cloud, namespace = self.snapshots(), self.settings.namespace
        return self.call(
            "find snapshots",
            lambda: cloud.find_snapshots(namespace, volume, name),
            repeatable=True,
        )

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        cloud = self.snapshots()
        return self.call("get snapshot", lambda: cloud.get_snapshot(snapshot_id), repeatable=True)
