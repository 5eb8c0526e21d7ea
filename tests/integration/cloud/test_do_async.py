"""DigitalOcean's attach and detach under a slow API: the fake moves `droplet_ids` only when
the action completes, after 100 to 300 ms, and every request takes 60 ms. The layer must
decide completion from one consistent reading (the action's status, then the volume read
after it) every time, and ask no more often than before (the API allows 250 requests a
minute): main made 12 to 17 requests a cycle here, and one cycle in three failed."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from orlop.backends.base import VolumeRef
from tests.contracts.cloud import backend_for
from tests.servers.digitalocean.server import DoServer
from tests.servers.digitalocean.testbed import DoTestbed

pytest_plugins = ["tests.servers.digitalocean.fixtures"]

CYCLES = 12
LATENCY = 0.06
MAX_MEAN_REQUESTS = 18


def test_attach_detach_cycles_under_latency_decide_from_one_reading(
    do_server: DoServer, do_token: Path, tmp_path: Path
) -> None:
    testbed = DoTestbed(do_server, do_token, tmp_path / "testbed")
    disks = backend_for(testbed.host()).provider
    ref = VolumeRef("slow-api", disks.options.validate({"size": "1G"}))
    ref.record = disks.create(ref)
    do_server.latency, do_server.action_delay = LATENCY, (0.1, 0.3)
    failures: list[str] = []
    requests: list[int] = []
    try:
        for cycle in range(CYCLES):
            before = len(do_server.requests)
            try:
                device = disks.attach_device(ref)
                assert os.path.realpath(device).startswith("/dev/")
                disks.detach_device(ref)
                requests.append(len(do_server.requests) - before)
            except Exception as error:  # collected, so that the message shows how often
                failures.append(f"cycle {cycle}: {error}")
                disks.detach_device(ref)
    finally:
        do_server.latency, do_server.action_delay = 0.0, 0.1
        disks.detach_device(ref)
        disks.remove(ref)
    assert failures == []
    assert statistics.mean(requests) <= MAX_MEAN_REQUESTS, requests
