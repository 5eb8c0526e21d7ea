"""CloudBackend's decisions about a mount of a disk another host took (issue 16), over the
in-memory cloud with the host's mounter and block devices handed in: no root, milliseconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.cloud.backend import CloudBackend
from orlop.core.model import VolumeLost
from tests.support.cloud.memory import MemoryCloud, MemoryProvider
from tests.unit.cloud.test_layer_decisions import FAST


class MemoryBackend(CloudBackend):
    cloud_provider = MemoryProvider


@dataclass
class TableMounter:
    """A mount table of its own: target → source."""

    table: dict[str, str] = field(default_factory=dict)
    unmounted: list[tuple[str, bool]] = field(default_factory=list)

    def mounted(self, target: str) -> str | None:
        return self.table.get(target)

    def unmount(self, target: str, lazy_if_busy: bool = False) -> None:
        self.table.pop(target, None)
        self.unmounted.append((target, lazy_if_busy))


def backend_on(cloud: MemoryCloud, instance: str, root: Path) -> tuple[MemoryBackend, TableMounter]:
    context = BackendContext(f"mem-{instance}", str(root / instance), settings=FAST)
    disks = MemoryBackend.provider_class(  # type: ignore[call-arg]
        context, devices=cloud.devices(instance), cloud=cloud.provider(instance)
    )
    mounter = TableMounter()
    return MemoryBackend(context, disks, mounter), mounter


def mounted_volume(
    cloud: MemoryCloud, root: Path
) -> tuple[MemoryBackend, TableMounter, VolumeRef, str]:
    """A volume created and attached on i-a, its filesystem 'mounted' there."""
    a, mounter = backend_on(cloud, "i-a", root)
    volume = VolumeRef("vol", {}, a.provider.create(VolumeRef("vol", {})))
    a.provider.attach_device(volume)
    target = a.mountpoint(volume)
    mounter.table[target] = "/dev/memory/mem-1"
    return a, mounter, volume, target


def preempt_from(cloud: MemoryCloud, root: Path, volume: VolumeRef, instance: str) -> None:
    other, _ = backend_on(cloud, instance, root)
    other.provider.attach_device(VolumeRef("vol", {"preempt": "true"}, volume.record))
    assert cloud.holders("mem-1") == [instance]


def gets(cloud: MemoryCloud, instance: str) -> int:
    return sum(1 for who, method in cloud.calls if who == instance and method == "get_disk")


def test_still_the_holder_costs_one_cloud_read(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, mounter, volume, target = mounted_volume(cloud, tmp_path)
    before = gets(cloud, "i-a")
    assert a.is_attached(volume, {target}) is True
    assert gets(cloud, "i-a") == before + 1
    assert mounter.unmounted == []


def test_a_mount_of_a_disk_taken_elsewhere_is_dropped_and_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    cloud = MemoryCloud()
    a, mounter, volume, target = mounted_volume(cloud, tmp_path)
    preempt_from(cloud, tmp_path, volume, "i-b")
    with pytest.raises(VolumeLost, match=r"taken over by instance i-b.*attached to instance i-b"):
        a.attach(volume)
    assert mounter.unmounted == [(target, True)]  # lazily, if a container still holds it
    assert a.provider.files.attachment("vol") is None
    assert cloud.holders("mem-1") == ["i-b"]  # and nothing was taken back


def test_recovery_does_not_count_a_leftover_mount_as_attached(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, mounter, volume, target = mounted_volume(cloud, tmp_path)
    preempt_from(cloud, tmp_path, volume, "i-b")
    assert a.is_attached(volume, {target}) is False
    assert target not in mounter.table


def test_discovery_reads_again_only_a_disk_listed_elsewhere(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, mounter, volume, target = mounted_volume(cloud, tmp_path)
    a.list_volumes()
    before = gets(cloud, "i-a")
    assert a.release_if_lost(volume) is None  # the listing shows i-a: no further read
    assert gets(cloud, "i-a") == before
    preempt_from(cloud, tmp_path, volume, "i-b")
    a.list_volumes()
    assert a.release_if_lost(volume) == "instance i-b"
    assert target not in mounter.table
    # The next Mount, found nothing mounted, still says the volume was lost.
    with pytest.raises(VolumeLost, match="taken over by instance i-b"):
        a.attach(volume)
