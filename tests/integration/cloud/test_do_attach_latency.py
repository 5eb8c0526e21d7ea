"""DigitalOcean's attach and detach under a real API's pace: every request 60 ms, every
action 100-300 ms, the droplet in `droplet_ids` only once its attach action completed.

An attach decided from two readings (the volume, then its action) failed about one time in
three here ("the attachment … vanished"); one reading — the action's status, then the volume
as it was after it — must make every cycle succeed, at no more requests than before."""

from __future__ import annotations

import os
from pathlib import Path

from tests.contracts.cloud import backend_for, make_volume
from tests.servers.digitalocean.server import DoServer
from tests.servers.digitalocean.testbed import DoTestbed
from tests.support.cloud.deviceio import read_at, write_at

pytest_plugins = ["tests.servers.digitalocean.fixtures"]

CYCLES = 15


def test_attach_and_detach_under_latency_never_lose_the_attachment(
    do_server: DoServer, do_token: Path, tmp_path: Path
) -> None:
    testbed = DoTestbed(do_server, do_token, tmp_path / "testbed")
    disks = backend_for(testbed.host()).provider
    volume = make_volume(disks, "paced", {"size": "1G"})
    do_server.latency, do_server.action_delay = 0.06, (0.1, 0.3)
    payload = os.urandom(4096)
    requests: list[int] = []
    try:
        for cycle in range(CYCLES):
            before = len(do_server.requests)
            device = disks.attach_device(volume)
            if cycle == 0:
                write_at(device, 1 << 20, payload)
            assert read_at(device, 1 << 20, len(payload)) == payload, cycle
            disks.detach_device(volume)
            assert disks.device_path(volume) is None
            requests.append(len(do_server.requests) - before)
    finally:
        do_server.latency, do_server.action_delay = 0.0, 0.0
        disks.detach_device(volume)
        disks.remove(volume)
    # Polling both the action and the volume on every pause would double this; within
    # 300 ms actions and the layer's growing pauses, a cycle takes about a dozen requests.
    assert max(requests) <= 30, requests
    assert testbed.cloud_disks(disks.settings.namespace) == []
