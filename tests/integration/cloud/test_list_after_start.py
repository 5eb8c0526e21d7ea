"""Right after `orlop serve` answers, List on a global driver already holds the volumes
other hosts made: it waits (bounded) for the first discovery pass instead of answering
before it. DigitalOcean's fake API at a slow pace, so that pass takes a while."""

from __future__ import annotations

import time
from pathlib import Path

from tests.contracts.cloud import backend_for, make_volume
from tests.servers.digitalocean.server import DoServer
from tests.servers.digitalocean.testbed import DoTestbed
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytest_plugins = ["tests.servers.digitalocean.fixtures"]


def test_list_and_get_right_after_start_see_other_hosts_volumes(
    do_server: DoServer, do_token: Path, tmp_path: Path
) -> None:
    testbed = DoTestbed(do_server, do_token, tmp_path / "testbed")
    disks = backend_for(testbed.host()).provider  # host A, without a daemon
    made = make_volume(disks, "made-on-a", {"size": "1G"})
    second = make_volume(disks, "also-on-a", {"size": "1G"})
    driver = unique("do")
    config = testbed.host().driver_config()
    # One pass only (the next is a minute away), and it takes a while: 0.3 s a request.
    config["settings"] = {**config["settings"], "discover_interval": 60}
    do_server.latency = 0.3
    daemon = OrlopDaemon({driver: config})
    try:
        daemon.start()
        started = time.monotonic()
        listed = daemon.client(driver).ok("List")["Volumes"]
        waited = time.monotonic() - started
        assert sorted(v["Name"] for v in listed) == ["also-on-a", "made-on-a"], (listed, waited)
        got = daemon.client(driver).ok("Get", Name="made-on-a")["Volume"]
        assert got["Name"] == "made-on-a"
        missing = daemon.client(driver).call("Get", Name="made-nowhere")
        assert "made-nowhere" in missing["Err"]
    finally:
        do_server.latency = 0.0
        daemon.destroy()
        disks.remove(made)
        disks.remove(second)


def test_an_unreachable_storage_holds_list_back_for_five_seconds_at_most(
    do_server: DoServer, do_token: Path, tmp_path: Path
) -> None:
    testbed = DoTestbed(do_server, do_token, tmp_path / "testbed")
    driver = unique("do")
    config = testbed.host().driver_config()
    config["settings"] = {**config["settings"], "discover_interval": 60, "api_timeout": 30}
    do_server.latency = 8.0  # every request hangs past the wait
    daemon = OrlopDaemon({driver: config})
    try:
        daemon.start()
        started = time.monotonic()
        # Answered before the pass ended (nothing listed yet), and not held for it.
        assert daemon.client(driver).ok("List")["Volumes"] == []
        assert time.monotonic() - started < 7.5
    finally:
        do_server.latency = 0.0
        daemon.destroy()
