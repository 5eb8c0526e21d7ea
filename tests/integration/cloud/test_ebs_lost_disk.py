"""A host that lost its disk to another host never mounts it again behind the cloud's back.

Three real `orlop serve` daemons, one per simulated EC2 instance, one EBS volume. The disk is
taken with preempt=true from a live host and from a dead one (kill -9, its kernel mount left
behind); the old hosts then mount again and restart. After every step: no two daemons report
the volume attached or mounted, the one that does is the instance EC2 shows as the holder,
and a Mount answers success only on the holder. A host that is not asked anything learns of
the loss at its next discovery pass (0.5 s here): that is the bound the checks allow.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.host.mounts import is_mountpoint
from tests.servers.ec2.server import MotoServer, SimulatedHost, namespace_volumes
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytest_plugins = ["tests.servers.ec2.fixtures"]

NAME = "contested"
SETTLE = 5.0  # seconds: discovery every 0.5 s, on a loaded machine


@pytest.fixture
def three(
    ec2_host: Callable[..., SimulatedHost],
) -> Iterator[tuple[str, list[SimulatedHost], list[OrlopDaemon]]]:
    driver = unique("ebs")
    hosts = [ec2_host() for _ in range(3)]
    daemons: list[OrlopDaemon] = []
    try:
        for host in hosts:
            config = host.driver_config(fs="ext4")
            config["settings"] = {**config["settings"], "discover_interval": 0.5}
            daemons.append(OrlopDaemon({driver: config}).start())
        yield driver, hosts, daemons
    finally:
        for daemon in daemons:
            daemon.destroy()


def events(daemon: OrlopDaemon) -> list[dict[str, Any]]:
    """The daemon's events journal (`orlop events --json`)."""
    output = daemon.cli("events", "--json").stdout
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def holders(moto: MotoServer, namespace: str) -> list[str]:
    [volume] = [
        v
        for v in namespace_volumes(moto.client(), namespace)
        if {"Key": "orlop:volume", "Value": NAME} in v.get("Tags", [])
    ]
    return [a["InstanceId"] for a in volume["Attachments"] if a["State"] != "detached"]


def status(daemon: OrlopDaemon, driver: str) -> dict[str, Any] | None:
    """What the daemon reports (None if it is down or does not know the volume yet)."""
    if daemon.process is None or daemon.process.poll() is not None:
        return None
    answer = daemon.client(driver).call("Get", Name=NAME)
    if answer.get("Err"):
        assert "no volume" in answer["Err"] or "not found" in answer["Err"], answer
        return None
    found: dict[str, Any] = answer["Volume"]
    return found


def mounted_here(daemon: OrlopDaemon, volume: dict[str, Any]) -> bool:
    return is_mountpoint(volume["Mountpoint"])


def check_invariants(
    moto: MotoServer, driver: str, hosts: list[SimulatedHost], daemons: list[OrlopDaemon]
) -> None:
    held = holders(moto, hosts[0].settings["namespace"])
    assert len(held) <= 1, f"EC2 shows the disk on {held}"
    claiming = []
    for host, daemon in zip(hosts, daemons, strict=True):
        volume = status(daemon, driver)
        if volume is None:
            continue
        state = volume["Status"]
        if state["state"] == "attached" or state["mounts"] or mounted_here(daemon, volume):
            claiming.append(host.instance_id)
    assert len(claiming) <= 1, f"{claiming} all report {NAME} attached (EC2: {held})"
    assert set(claiming) <= set(held), f"{claiming} report it attached, EC2 shows {held}"


def test_preempted_hosts_never_mount_the_disk_again(
    moto: MotoServer, three: tuple[str, list[SimulatedHost], list[OrlopDaemon]]
) -> None:
    driver, hosts, daemons = three
    a, b, c = (daemon.client(driver) for daemon in daemons)
    ids = [host.instance_id for host in hosts]

    def check() -> None:
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                check_invariants(moto, driver, hosts, daemons)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def mounted(client: Any, mount_id: str, host: int) -> str:
        where: str = client.ok("Mount", Name=NAME, ID=mount_id)["Mountpoint"]
        assert holders(moto, hosts[0].settings["namespace"]) == [ids[host]]
        return where

    a.ok("Create", Name=NAME, Opts={"size": "1G"})
    where = mounted(a, "a1", 0)
    Path(where, "first").write_text("written on A")
    check()

    # B takes it from a live A.
    b.ok("Create", Name=NAME, Opts={"preempt": "true"})
    where_b = mounted(b, "b1", 1)
    assert Path(where_b, "first").read_text() == "written on A"
    assert holders(moto, hosts[0].settings["namespace"]) == [ids[1]]
    taken = [e for e in events(daemons[1]) if e["kind"] == "preempted"]
    assert [(e["volume"], e["driver"]) for e in taken] == [(NAME, driver)]
    assert ids[0] in taken[0]["message"]

    # A's leftover mount is no licence: a new container there is refused, naming B, and
    # A unmounts what it had and says why.
    refused = a.call("Mount", Name=NAME, ID="a2")
    assert ids[1] in refused["Err"], refused
    volume_a = a.ok("Get", Name=NAME)["Volume"]
    assert not is_mountpoint(volume_a["Mountpoint"])
    assert volume_a["Status"]["state"] == "ready" and volume_a["Status"]["mounts"] == 0
    assert ids[1] in volume_a["Status"]["fault"], volume_a["Status"]
    assert "lost" in daemons[0].log()
    assert [e["volume"] for e in events(daemons[0]) if e["kind"] == "lost"] == [NAME]
    check()
    a.ok("Unmount", Name=NAME, ID="a1")  # Docker's unmount of the old container still ends
    check()

    # B dies holding it (its kernel mount stays); C takes it from the dead host.
    Path(where_b, "second").write_text("written on B")
    os.sync()
    daemons[1].kill()
    assert is_mountpoint(where_b)
    c.ok("Create", Name=NAME, Opts={"preempt": "true"})
    where_c = mounted(c, "c1", 2)
    assert Path(where_c, "second").read_text() == "written on B"
    check()

    # B comes back: recovery asks EC2, not only the mount table, and lets the disk go.
    daemons[1].start()
    b = daemons[1].client(driver)  # a new connection to the new process
    deadline = time.monotonic() + 30
    while (b_now := b.ok("Get", Name=NAME)["Volume"])["Status"]["mounts"]:
        assert time.monotonic() < deadline, b_now
        time.sleep(0.2)
    assert not is_mountpoint(where_b)
    assert ids[2] in b_now["Status"]["fault"], b_now["Status"]
    check()
    refused = a.call("Mount", Name=NAME, ID="a3")  # A never asked for preempt
    assert ids[2] in refused["Err"], refused
    check()

    # A restarts too: nothing of it comes back.
    daemons[0].stop()
    daemons[0].start()
    check()
    assert daemons[0].client(driver).ok("Get", Name=NAME)["Volume"]["Status"]["mounts"] == 0

    # B created it with preempt=true: a new container there takes it from C, and C, asked
    # nothing, lets go of its mount at its next discovery pass.
    where_b = mounted(b, "b2", 1)
    assert Path(where_b, "second").read_text() == "written on B"
    check()
    assert not is_mountpoint(where_c)
    c.ok("Unmount", Name=NAME, ID="c1")  # gone already: still ends
    b.ok("Unmount", Name=NAME, ID="b2")
    b.ok("Unmount", Name=NAME, ID="b1")
    check()
    c.ok("Remove", Name=NAME)
    assert namespace_volumes(moto.client(), hosts[0].settings["namespace"]) == []


def test_a_loss_found_by_discovery_is_still_reported_at_the_next_mount(
    moto: MotoServer, three: tuple[str, list[SimulatedHost], list[OrlopDaemon]]
) -> None:
    """A's discovery pass, not a Mount, drops the leftover mount; the Mount after it is
    refused naming the holder, and Status keeps saying the volume was lost (it used to
    clear the fault while settling the refused first mount)."""
    driver, hosts, daemons = three
    a, b = daemons[0].client(driver), daemons[1].client(driver)
    a.ok("Create", Name=NAME, Opts={"size": "1G"})
    where = a.ok("Mount", Name=NAME, ID="a1")["Mountpoint"]
    b.ok("Create", Name=NAME, Opts={"preempt": "true"})
    b.ok("Mount", Name=NAME, ID="b1")
    deadline = time.monotonic() + SETTLE
    while is_mountpoint(where):  # A is asked nothing: its discovery pass finds the loss
        assert time.monotonic() < deadline, "A kept the mount of a disk B holds"
        time.sleep(0.1)
    refused = a.call("Mount", Name=NAME, ID="a2")
    assert hosts[1].instance_id in refused["Err"], refused
    state = a.ok("Get", Name=NAME)["Volume"]["Status"]
    assert state["mounts"] == 0 and hosts[1].instance_id in state.get("fault", ""), state
    assert not is_mountpoint(where)
    check_invariants(moto, driver, hosts, daemons)
    b.ok("Unmount", Name=NAME, ID="b1")
    b.ok("Remove", Name=NAME)
