"""An in-memory cloud honouring the provider contract (orlop/backends/cloud/api.py), for unit
tests of the layer's decisions in milliseconds, without root or a server.

One `MemoryCloud` is the cloud every simulated host shares; `cloud.provider(instance)` is one
host's provider and `cloud.devices(instance)` its block devices (the `BlockDevices` seam): a
disk's device shows on a host once the cloud reports the attachment `attached` there.

Faithful where the layer's decisions depend on it:
* a second read-write attach is refused (IN_USE, naming the holder) unless the cloud is made
  with `refuses_second_attach=False`, like clouds the layer must guard itself;
* attach and detach complete asynchronously: an attachment stays `attaching` / `detaching`
  for `settle_reads` reads of the disk (get or find) before it changes;
* throttling: `throttle(n)` makes the next n calls fail THROTTLED, as a rate limit does;
* `fail_next(method, kind)` makes one call of a method fail (the call changes nothing).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from orlop.backends.base import Check
from orlop.backends.cloud.api import (
    Attachment,
    CloudError,
    CloudSettings,
    Disk,
    DiskSpec,
    ErrorKind,
    Identity,
)
from orlop.core.options import OptionSet

PREFIX = "/dev/memory"


class MemoryCloud:
    def __init__(
        self, refuses_second_attach: bool = True, settle_reads: int = 1, latency: float = 0.0
    ) -> None:
        self.refuses_second_attach = refuses_second_attach
        self.settle_reads = settle_reads
        self.latency = latency  # seconds each call takes before it acts (lets races happen)
        self.disks: dict[str, Disk] = {}
        self.pending: dict[tuple[str, str], int] = {}  # (disk, instance) → reads to settle
        self.calls: list[tuple[str, str]] = []  # (instance, method), in order
        self.lock = threading.RLock()
        self._throttled = 0
        self._failures: dict[str, ErrorKind] = {}
        self._ids = itertools.count(1)

    def provider(self, instance: str, zone: str | None = None) -> MemoryProvider:
        return MemoryProvider(self, Identity(instance, zone))

    def devices(self, instance: str) -> MemoryDevices:
        return MemoryDevices(self, instance)

    def throttle(self, calls: int) -> None:
        self._throttled = calls

    def fail_next(self, method: str, kind: ErrorKind) -> None:
        self._failures[method] = kind

    def holders(self, disk_id: str) -> list[str]:
        with self.lock:
            disk = self.disks.get(disk_id)
            return [a.instance for a in disk.attachments] if disk else []

    # what every call goes through -----------------------------------------------------------
    def enter(self, instance: str, method: str) -> None:
        """Every call: its latency first (outside the lock, as a network round trip), then
        an injected throttle or failure."""
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            self.calls.append((instance, method))
            if self._throttled:
                self._throttled -= 1
                raise CloudError("rate exceeded", ErrorKind.THROTTLED, "Throttling")
            kind = self._failures.pop(method, None)
        if kind is not None:
            raise CloudError(f"{method} failed ({kind})", kind, "Injected")

    def read(self, disk_id: str) -> Disk | None:
        """The disk as a read shows it; every read moves pending attachments on."""
        disk = self.disks.get(disk_id)
        if disk is None:
            return None
        for attachment in list(disk.attachments):
            key = (disk_id, attachment.instance)
            left = self.pending.get(key, 0) - 1
            if attachment.state in ("attaching", "detaching") and left < 0:
                self.pending.pop(key, None)
                disk.attachments.remove(attachment)
                if attachment.state == "attaching":
                    disk.attachments.append(dataclasses.replace(attachment, state="attached"))
            elif attachment.state != "attached":
                self.pending[key] = left
        return copy_of(disk)

    def set_state(self, disk_id: str, instance: str, state: str) -> None:
        disk = self.disks[disk_id]
        current = disk.attached_to(instance)
        assert current is not None
        disk.attachments.remove(current)
        disk.attachments.append(dataclasses.replace(current, state=state))  # type: ignore[arg-type]
        self.pending[(disk_id, instance)] = self.settle_reads


def copy_of(disk: Disk) -> Disk:
    return dataclasses.replace(disk, labels=dict(disk.labels), attachments=list(disk.attachments))


class MemoryProvider:
    """One host's view of a MemoryCloud, as a CloudProvider."""

    kind: ClassVar[str] = "memory"
    disk_word: ClassVar[str] = "memory disk"
    options: ClassVar[OptionSet] = OptionSet([])
    settings_model: ClassVar[type[CloudSettings]] = CloudSettings

    def __init__(self, cloud: MemoryCloud, identity: Identity) -> None:
        self.world = cloud
        self.me = identity
        self.refuses_second_attach = cloud.refuses_second_attach

    def _enter(self, method: str) -> None:
        self.world.enter(self.me.instance, method)

    def identity(self) -> Identity:
        self._enter("identity")
        return self.me

    def validate(self, options: dict[str, str]) -> None:
        pass

    def create_disk(self, spec: DiskSpec, identity: Identity) -> Disk:
        self._enter("create_disk")
        with self.world.lock:
            for disk in self.world.disks.values():
                if disk.labels.get("create-token") == spec.token:
                    return copy_of(disk)  # the same create repeated
            disk_id = f"mem-{next(self.world._ids)}"
            size = int(spec.options.get("size", 1024**3))
            disk = Disk(disk_id, disk_id, size, "ready", identity.zone, dict(spec.labels))
            self.world.disks[disk_id] = disk
            return copy_of(disk)

    def get_disk(self, disk_id: str) -> Disk | None:
        self._enter("get_disk")
        with self.world.lock:
            return self.world.read(disk_id)

    def find_disks(self, namespace: str, volume: str | None = None) -> list[Disk]:
        self._enter("find_disks")
        with self.world.lock:
            found = []
            for disk_id, disk in list(self.world.disks.items()):
                if disk.labels.get("namespace") == namespace and (
                    volume is None or disk.labels.get("volume") == volume
                ):
                    found.append(self.world.read(disk_id))
            return [disk for disk in found if disk is not None]

    def delete_disk(self, disk: Disk) -> None:
        self._enter("delete_disk")
        with self.world.lock:
            now = self.world.disks.get(disk.id)
            if now is not None and now.attachments:
                raise CloudError(f"{disk.id} is attached", ErrorKind.IN_USE, "InUse")
            self.world.disks.pop(disk.id, None)

    def set_labels(self, disk: Disk, labels: Mapping[str, str | None]) -> None:
        self._enter("set_labels")
        with self.world.lock:
            now = self._disk(disk.id)
            for key, value in labels.items():
                if value is None:
                    now.labels.pop(key, None)
                else:
                    now.labels[key] = value

    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        return None

    def attach_disk(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        self._enter("attach_disk")
        with self.world.lock:
            now = self._disk(disk.id)
            if now.attached_to(identity.instance):
                return
            others = now.others(identity.instance)
            if others and self.refuses_second_attach:
                raise CloudError(
                    f"{disk.id} is attached to {others[0].instance}",
                    ErrorKind.IN_USE,
                    "VolumeInUse",
                    others[0].instance,
                )
            now.attachments.append(Attachment(identity.instance, "attaching"))
            self.world.pending[(disk.id, identity.instance)] = self.world.settle_reads

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        self._enter("detach_disk")
        with self.world.lock:
            now = self._disk(disk.id)
            if now.attached_to(instance) is None:
                raise CloudError(f"{disk.id} is not attached to {instance}", ErrorKind.NOT_FOUND)
            self.world.set_state(disk.id, instance, "detaching")

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        return [f"{PREFIX}/{disk.id}"]

    def resize_disk(self, disk: Disk, size: int) -> None:
        self._enter("resize_disk")
        with self.world.lock:
            self._disk(disk.id).size = size

    def options_of(self, disk: Disk) -> dict[str, str]:
        return {"size": str(disk.size)}

    def describe(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {"disk_id": record.get("disk_id")}

    @classmethod
    def host_checks(cls) -> list[Check]:
        return []

    def _disk(self, disk_id: str) -> Disk:
        disk = self.world.disks.get(disk_id)
        if disk is None:
            raise CloudError(f"{disk_id} does not exist", ErrorKind.NOT_FOUND, "NotFound")
        return disk


class MemoryDevices:
    """The BlockDevices of one simulated host: a disk's device is there while the cloud shows
    it attached (not attaching, not detached) to this instance."""

    def __init__(self, cloud: MemoryCloud, instance: str) -> None:
        self.world = cloud
        self.instance = instance

    def find(self, paths: Iterable[str]) -> str | None:
        with self.world.lock:
            for path in paths:
                disk = self.world.disks.get(path.removeprefix(PREFIX + "/"))
                mine = disk.attached_to(self.instance) if disk else None
                if mine is not None and mine.state != "attaching":
                    return path
            return None

    def size(self, device: str) -> int:
        disk = self.world.disks.get(device.removeprefix(PREFIX + "/"))
        return disk.size if disk else 0
