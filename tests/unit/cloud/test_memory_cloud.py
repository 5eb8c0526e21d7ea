"""The in-memory cloud keeps the provider contract the layer relies on (api.py), so the layer's
unit tests decide against what a real cloud would answer."""

from __future__ import annotations

import pytest

from orlop.backends.cloud.api import CloudError, CloudProvider, DiskSpec, ErrorKind
from tests.support.cloud.memory import MemoryCloud


def spec(token: str = "t1") -> DiskSpec:
    labels = {"managed-by": "orlop", "namespace": "ns", "volume": "Vol.1", "create-token": token}
    return DiskSpec("Vol.1", "ns", labels, token, {"size": "2048"})


def test_the_memory_provider_keeps_the_contract() -> None:
    cloud = MemoryCloud(settle_reads=1)
    a, b = cloud.provider("i-a"), cloud.provider("i-b")
    assert isinstance(a, CloudProvider)
    disk = a.create_disk(spec(), a.identity())
    assert a.create_disk(spec(), a.identity()).id == disk.id  # the same token: one disk
    [found] = b.find_disks("ns", "Vol.1")
    assert (found.id, found.volume, found.size) == (disk.id, "Vol.1", 2048)
    assert b.find_disks("other") == []

    a.attach_disk(disk, a.identity(), None)
    states = [a.get_disk(disk.id).attachments[0].state for _ in range(3)]  # type: ignore[union-attr]
    assert states == ["attaching", "attached", "attached"]  # asynchronous, then done
    with pytest.raises(CloudError) as refused:
        b.attach_disk(disk, b.identity(), None)
    assert (refused.value.kind, refused.value.holder) == (ErrorKind.IN_USE, "i-a")
    with pytest.raises(CloudError) as busy:
        a.delete_disk(disk)
    assert busy.value.kind is ErrorKind.IN_USE

    a.detach_disk(disk, "i-a")
    states = [[x.state for x in a.get_disk(disk.id).attachments] for _ in range(3)]  # type: ignore[union-attr]
    assert states == [["detaching"], [], []]
    with pytest.raises(CloudError) as gone:
        a.detach_disk(disk, "i-a")
    assert gone.value.kind is ErrorKind.NOT_FOUND

    cloud.throttle(1)
    with pytest.raises(CloudError) as throttled:
        a.get_disk(disk.id)
    assert throttled.value.kind is ErrorKind.THROTTLED
    a.delete_disk(disk)
    assert a.get_disk(disk.id) is None
