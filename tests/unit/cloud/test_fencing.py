"""Fencing (issue 19) over the in-memory cloud: a preempt bumps the disk's generation before
it detaches; a host whose kept generation is stale refuses to attach, remount and flush the
volume, naming the holder and its generation; disks and state from before fencing still work.
No root, no kernel: the mount table and block devices are the tests' own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.api import ErrorKind
from orlop.backends.cloud.fence import LABEL_FENCE, Fence, stale_against
from orlop.core.model import BackendError, Conflict, VolumeLost
from tests.support.cloud.memory import MemoryCloud
from tests.unit.cloud.test_lost_mount import MemoryBackend, TableMounter, backend_on

DISK = "mem-1"


def fence(cloud: MemoryCloud) -> Fence:
    return Fence.parse(cloud.disks[DISK].labels.get(LABEL_FENCE))


def kept_generation(backend: MemoryBackend, name: str = "vol") -> object:
    known = backend.provider.files.attachment(name)
    return None if known is None else known.get("generation")


def mounted_on_a(cloud: MemoryCloud, root: Path) -> tuple[MemoryBackend, TableMounter, VolumeRef]:
    a, mounter = backend_on(cloud, "i-a", root)
    volume = VolumeRef("vol", {}, a.provider.create(VolumeRef("vol", {})))
    a.provider.attach_device(volume)
    mounter.table[a.mountpoint(volume)] = "/dev/memory/mem-1"
    return a, mounter, volume


def preempt_on_b(cloud: MemoryCloud, root: Path, volume: VolumeRef) -> MemoryBackend:
    b, _ = backend_on(cloud, "i-b", root)
    b.provider.attach_device(VolumeRef("vol", {"preempt": "true"}, volume.record))
    return b


def restarted(cloud: MemoryCloud, root: Path, instance: str) -> tuple[MemoryBackend, TableMounter]:
    """The same host's backend made anew over its state directory: a daemon restart."""
    return backend_on(cloud, instance, root)


def test_the_creator_owns_generation_one_and_its_attach_keeps_it_here(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, _ = backend_on(cloud, "i-a", tmp_path)
    volume = VolumeRef("vol", {}, a.provider.create(VolumeRef("vol", {})))
    assert fence(cloud) == Fence(1, "i-a")  # written with the other labels at create
    a.provider.attach_device(volume)
    assert not any(method == "set_labels" for _, method in cloud.calls)
    assert kept_generation(a) == 1
    # The record is fsynced JSON in the state directory: a restart reads it back.
    path = tmp_path / "i-a" / "cloud" / "attached" / "vol"
    assert json.loads(path.read_text())["generation"] == 1
    # Attaching again here (idempotent) is no take-over: no write, the same generation.
    writes = sum(1 for _, method in cloud.calls if method == "set_labels")
    a.provider.attach_device(volume)
    assert sum(1 for _, method in cloud.calls if method == "set_labels") == writes
    assert fence(cloud) == Fence(1, "i-a")


def test_preempt_bumps_the_generation_before_it_detaches(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    _, _, volume = mounted_on_a(cloud, tmp_path)
    start = len(cloud.calls)
    b = preempt_on_b(cloud, tmp_path, volume)
    calls = [(who, method) for who, method in cloud.calls[start:] if who == "i-b"]
    methods = [method for _, method in calls]
    assert methods.index("set_labels") < methods.index("detach_disk") < methods.index("attach_disk")
    assert fence(cloud) == Fence(2, "i-b")
    assert kept_generation(b) == 2
    assert cloud.holders(DISK) == ["i-b"]


def test_a_preempt_whose_detach_fails_still_fences_the_old_holder(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, mounter, volume = mounted_on_a(cloud, tmp_path)
    cloud.fail_next("detach_disk", ErrorKind.FAILED)  # the forced detach never happens
    b, _ = backend_on(cloud, "i-b", tmp_path)
    with pytest.raises(BackendError, match="to leave i-a"):
        b.provider.attach_device(VolumeRef("vol", {"preempt": "true"}, volume.record))
    assert cloud.holders(DISK) == ["i-a"] and fence(cloud) == Fence(2, "i-b")
    target = a.mountpoint(volume)
    assert a.is_attached(volume, {target}) is False  # A stops using it: it cannot know
    assert target not in mounter.table
    a.provider.attach_device(VolumeRef("vol", {}, volume.record))  # a new Mount takes it back
    assert fence(cloud) == Fence(3, "i-a") and kept_generation(a) == 3


def test_a_take_over_without_preempt_grows_the_generation(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, mounter, volume = mounted_on_a(cloud, tmp_path)
    mounter.table.clear()
    a.provider.detach_device(volume)
    b, _ = backend_on(cloud, "i-b", tmp_path)
    b.provider.attach_device(volume)
    assert fence(cloud) == Fence(2, "i-b")
    b.provider.detach_device(volume)
    a.provider.attach_device(volume)  # A's own file was dropped at its detach: a new attach
    assert fence(cloud) == Fence(3, "i-a") and kept_generation(a) == 3


def test_a_stale_host_restarted_with_its_old_state_does_not_reattach(tmp_path: Path) -> None:
    """A held generation 1 and went down; B preempted (generation 2) and unmounted again, so
    the disk is free: only the fence tells A's recovery that the disk is no longer its."""
    cloud = MemoryCloud()
    _, _, volume = mounted_on_a(cloud, tmp_path)
    b = preempt_on_b(cloud, tmp_path, volume)
    b.provider.detach_device(volume)
    assert cloud.holders(DISK) == []
    a, _ = restarted(cloud, tmp_path, "i-a")
    assert kept_generation(a) == 1  # the old state
    repair = VolumeRef("vol", {}, volume.record, repair=True)
    with pytest.raises(Conflict) as refused:
        a.attach(repair)
    message = str(refused.value)
    assert "taken over by instance i-b (fence generation 2)" in message
    assert "attached it under generation 1" in message
    assert cloud.holders(DISK) == []  # nothing was attached
    assert kept_generation(a) is None  # A no longer claims it
    assert fence(cloud) == Fence(2, "i-b")
    # A new Mount there (a user's, not recovery's) is a new take-over of the free disk.
    a.provider.attach_device(VolumeRef("vol", {}, volume.record))
    assert fence(cloud) == Fence(3, "i-a") and cloud.holders(DISK) == ["i-a"]


def test_a_stale_host_refuses_to_reattach_even_while_the_cloud_still_shows_it(
    tmp_path: Path,
) -> None:
    """The preempter's bump is written, its forced detach not done yet: the cloud still shows
    A attached, the fence already says B."""
    cloud = MemoryCloud()
    a, mounter, volume = mounted_on_a(cloud, tmp_path)
    b, _ = backend_on(cloud, "i-b", tmp_path)
    b.provider.attacher.fencing.bump(cloud.disks[DISK], b.provider.identity())
    assert cloud.holders(DISK) == ["i-a"]
    mounter.table.clear()  # the mount is gone: a Mount repairs it, which must be refused
    with pytest.raises(Conflict, match=r"taken over by instance i-b \(fence generation 2\)"):
        a.attach(volume)
    assert cloud.holders(DISK) == ["i-a"]  # refused before anything changed in the cloud


def test_remount_of_a_stale_mount_drops_it_and_names_the_holder(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, mounter, volume = mounted_on_a(cloud, tmp_path)
    target = a.mountpoint(volume)
    b, _ = backend_on(cloud, "i-b", tmp_path)
    b.provider.attacher.fencing.bump(cloud.disks[DISK], b.provider.identity())
    assert a.is_attached(volume, {target}) is False  # recovery's question
    assert mounter.unmounted == [(target, True)]  # lazily, if a container still holds it
    assert kept_generation(a) is None
    # Recovery's re-attach that follows still knows which generation this host had.
    with pytest.raises(
        Conflict, match=r"i-b \(fence generation 2\); this host attached it under generation 1"
    ):
        a.provider.attach_device(VolumeRef("vol", {}, volume.record, repair=True))
    assert cloud.holders(DISK) == ["i-a"]  # nothing attached or detached by the refusal


def test_unmount_of_a_stale_mount_still_ends_and_leaves_the_holder_alone(tmp_path: Path) -> None:
    """The old container's Unmount: the disk left A when B preempted it, so nothing here is
    detached from B, and the fence stays B's."""
    cloud = MemoryCloud()
    a, _, volume = mounted_on_a(cloud, tmp_path)
    preempt_on_b(cloud, tmp_path, volume)
    a.detach(volume)
    assert cloud.holders(DISK) == ["i-b"] and fence(cloud) == Fence(2, "i-b")
    assert kept_generation(a) is None


def test_a_snapshot_does_not_freeze_a_stale_mount(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, mounter, volume = mounted_on_a(cloud, tmp_path)
    b, _ = backend_on(cloud, "i-b", tmp_path)
    b.provider.attacher.fencing.bump(cloud.disks[DISK], b.provider.identity())
    a._snapshots = lambda: cloud.provider("i-a")  # type: ignore[method-assign]
    with pytest.raises(VolumeLost, match=r"instance i-b \(fence generation 2\).*not frozen"):
        a.create_snapshot(volume, "nightly")
    assert mounter.unmounted == [(a.mountpoint(volume), True)]


def test_discovery_finds_a_fence_taken_over_from_its_listing(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, mounter, volume = mounted_on_a(cloud, tmp_path)
    a.list_volumes()
    assert a.release_if_lost(volume) is None
    b, _ = backend_on(cloud, "i-b", tmp_path)
    b.provider.attacher.fencing.bump(cloud.disks[DISK], b.provider.identity())
    a.list_volumes()  # the cloud still lists A as attached; the fence says B
    assert a.release_if_lost(volume) == "instance i-b (fence generation 2)"
    assert a.mountpoint(volume) not in mounter.table


def test_a_disk_from_before_fencing_is_fenced_at_its_next_attach(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, _ = backend_on(cloud, "i-a", tmp_path)
    volume = VolumeRef("vol", {}, a.provider.create(VolumeRef("vol", {})))
    cloud.disks[DISK].labels.pop(LABEL_FENCE)  # made before fencing: generation 0
    a.provider.attach_device(VolumeRef("vol", {}, volume.record, repair=True))
    assert fence(cloud) == Fence(1, "i-a")


def test_state_written_before_fencing_is_read_and_upgraded(tmp_path: Path) -> None:
    """A host attached the disk under the code before fencing (its record without a
    generation, the disk without a fence label), then restarted into this code."""
    cloud = MemoryCloud()
    a, _, volume = mounted_on_a(cloud, tmp_path)
    cloud.disks[DISK].labels.pop(LABEL_FENCE)
    directory = tmp_path / "i-a" / "cloud" / "attached"
    old = json.loads((directory / "vol").read_text())
    del old["generation"]  # the shape main writes: disk_id, instance, device_name, path, paths
    assert set(old) == {"disk_id", "instance", "device_name", "path", "paths"}
    (directory / "vol").write_text(json.dumps(old))
    a, mounter = restarted(cloud, tmp_path, "i-a")
    assert kept_generation(a) is None
    target = a.mountpoint(volume)
    mounter.table[target] = "/dev/memory/mem-1"
    assert a.is_attached(volume, {target}) is True  # unfenced: still this host's
    a.provider.attach_device(VolumeRef("vol", {}, volume.record, repair=True))
    assert fence(cloud) == Fence(1, "i-a") and kept_generation(a) == 1
    # An old record and a fence another host wrote since: refused by owner alone.
    b, _ = backend_on(cloud, "i-b", tmp_path)
    b.provider.attacher.fencing.bump(cloud.disks[DISK], b.provider.identity())
    (directory / "vol").write_text(json.dumps(old))
    a, mounter = restarted(cloud, tmp_path, "i-a")
    with pytest.raises(
        Conflict, match=r"i-b \(fence generation 2\); this host keeps no generation"
    ):
        a.provider.attach_device(VolumeRef("vol", {}, volume.record))
    assert not os.path.exists(directory / "vol")


def test_stale_rules() -> None:
    assert stale_against(Fence(), "i-a", 7) is None  # unfenced
    assert stale_against(Fence(3, "i-a"), "i-a", 3) is None
    assert stale_against(Fence(3, "i-a"), "i-a", None) is None  # old record, same owner
    assert stale_against(Fence(4, "i-a"), "i-a", 3) is not None  # another daemon of i-a took it
    assert stale_against(Fence(3, "i-b"), "i-a", 3) is not None
    assert Fence.parse("12 i-0abc") == Fence(12, "i-0abc")
    assert Fence.parse("garbage") == Fence() and Fence.parse(None) == Fence()


def test_the_fence_label_survives_every_provider_encoding() -> None:
    """Instance IDs as each cloud names them, through the label encodings that are not
    plain key/value text (GCE labels, DigitalOcean tags)."""
    from orlop.backends.cloud.digitalocean import tags
    from orlop.backends.cloud.gce import labels as gce_labels

    for owner in ("i-0abc123", "orlop-node-1", "36000001", "vm-1042", "3f1c0a6e-aa"):
        value = Fence(12, owner).label()
        assert gce_labels.decode(gce_labels.encode({LABEL_FENCE: value})) == {LABEL_FENCE: value}
        assert tags.labels_of(tags.label_tags({LABEL_FENCE: value})) == {LABEL_FENCE: value}
        assert Fence.parse(value) == Fence(12, owner)
