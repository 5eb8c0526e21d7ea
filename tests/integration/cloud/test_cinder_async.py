"""Cinder attachments under a slow Nova: nova-compute's part of each attach and detach
takes 100 to 500 ms after Nova answered, and every Nova request 50 ms. The volume's status
in the real Cinder (reserved → attaching → in-use, detaching → available) is the one
reading that decides: attach answers only once Cinder says in-use here, detach only once
the volume is available again."""

from __future__ import annotations

import os

from orlop.backends.base import VolumeRef
from tests.contracts.cloud import backend_for
from tests.servers.cinder.testbed import CinderTestbed

pytest_plugins = ["tests.servers.cinder.fixtures"]

CYCLES = 2


def test_attach_detach_cycles_under_a_slow_nova(cinder_testbed: CinderTestbed) -> None:
    host = cinder_testbed.host()
    disks = backend_for(host).provider
    ref = VolumeRef("slow-nova", disks.options.validate({"size": "1G"}))
    ref.record = disks.create(ref)
    nova = cinder_testbed.nova
    kind = nova.compute_delay
    nova.compute_delay, nova.latency = (0.1, 0.5), 0.05
    path = f"/volumes/{ref.record['disk_id']}"
    try:
        for _ in range(CYCLES):
            device = disks.attach_device(ref)
            assert os.path.realpath(device).startswith("/dev/")
            volume = cinder_testbed.cinder.request("GET", path)["volume"]
            assert volume["status"] == "in-use"
            assert [a["server_id"] for a in volume["attachments"]] == [host.instance]
            disks.detach_device(ref)
            volume = cinder_testbed.cinder.request("GET", path)["volume"]
            assert volume["status"] == "available" and volume["attachments"] == []
    finally:
        nova.compute_delay, nova.latency = kind, 0.0
        disks.detach_device(ref)
        disks.remove(ref)
