"""GCE's attach and detach under an unkind Compute API: 60 ms a request, each zone
operation 100 ms PENDING and 100 ms RUNNING, and `zoneOperations.wait` answering after
50 ms whether DONE or not. A disk's `users` changes only when the operation is DONE: the
provider returns from an attach or detach only then, and the layer's one reading after it
decides."""

from __future__ import annotations

import os

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.gce.resources import last
from tests.contracts.cloud import backend_for
from tests.servers.gce.testbed import GceTestbed

pytest_plugins = ["tests.servers.gce.fixtures"]

CYCLES = 3


def users(gce: GceTestbed, name: str) -> list[str]:
    with gce.server.lock:
        disk = next(d for d in gce.server.disks.values() if d["name"] == name)
        return [last(u) for u in disk.get("users", [])]


def test_attach_and_detach_return_when_the_operation_is_done_under_latency(
    gce: GceTestbed,
) -> None:
    host = gce.host()
    disks = backend_for(host).provider
    ref = VolumeRef("slow-compute", disks.options.validate({"size": "10G"}))
    ref.record = disks.create(ref)
    name = str(ref.record["disk_name"])
    gce.server.set_delay(0.1)
    gce.server.set_unkind(latency=0.06, wait_longest=0.05)
    cloud, me = disks.cloud, host.instance
    try:
        for _ in range(CYCLES):
            device = disks.attach_device(ref)
            assert os.path.realpath(device).startswith("/dev/")
            assert users(gce, name) == [me]
            disks.detach_device(ref)
            assert users(gce, name) == []
        # The provider alone: back from attach_disk means the operation is DONE.
        disk = cloud.get_disk(ref.record["disk_id"])
        assert disk is not None
        cloud.attach_disk(disk, disks.identity(), cloud.device_name(disk, disks.identity()))
        assert users(gce, name) == [me]
        cloud.detach_disk(disk, me)
        assert users(gce, name) == []
    finally:
        gce.server.set_unkind()
        disks.detach_device(ref)
        disks.remove(ref)
