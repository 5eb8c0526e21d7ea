"""The Vanishing protocol of cloud disks (a disk another host deleted), over the in-memory
cloud: no root, milliseconds."""

from __future__ import annotations

from pathlib import Path

from orlop.backends.base import Vanishing, VolumeRef
from tests.support.cloud.memory import MemoryCloud
from tests.unit.cloud.test_lost_mount import backend_on


def test_a_disk_deleted_by_another_host_has_vanished_and_its_traces_go(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, _ = backend_on(cloud, "i-a", tmp_path)
    b, _ = backend_on(cloud, "i-b", tmp_path)
    assert isinstance(b, Vanishing)
    on_a = VolumeRef("vol", {}, a.provider.create(VolumeRef("vol", {})))
    on_b = VolumeRef("vol", {}, b.provider.create(VolumeRef("vol", {})))  # adopted by B
    b.provider.attach_device(on_b)
    b.provider.detach_device(on_b)
    b.provider.files.keep_attachment("vol", {"disk_id": on_b.record["disk_id"]})  # a trace
    assert b.vanished(on_b) is False  # the disk is there: kept
    assert b.provider.files.attachment("vol") is not None
    a.provider.remove(on_a)  # the controller's DeleteVolume, on A
    assert cloud.disks == {}
    assert b.vanished(on_b) is True
    assert b.provider.files.attachment("vol") is None


def test_a_record_without_a_disk_id_is_not_taken_for_gone(tmp_path: Path) -> None:
    b, _ = backend_on(MemoryCloud(), "i-b", tmp_path)
    assert b.vanished(VolumeRef("vol", {}, {})) is False  # an interrupted create: recovery's
