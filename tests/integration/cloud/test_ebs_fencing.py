"""Fencing with two real `orlop serve` daemons on the EC2 test server (issue 19).

Host A mounts the volume and dies (kill -9: its kernel mount stays); host B preempts it,
writes, and unmounts, so the disk is free again. A's daemon restarts with its old state: the
cloud shows nobody holding the disk, and only the fence on the disk (tag `orlop:fence`, the
generation B bumped) tells A's recovery not to mount it again. A says who holds it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orlop.host.mounts import is_mountpoint
from tests.servers.ec2.server import MotoServer, SimulatedHost, namespace_volumes
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytest_plugins = ["tests.servers.ec2.fixtures"]

NAME = "fenced"


@pytest.fixture
def two(
    ec2_host: Callable[..., SimulatedHost],
) -> Iterator[tuple[str, list[SimulatedHost], list[OrlopDaemon]]]:
    driver = unique("ebs")
    hosts = [ec2_host() for _ in range(2)]
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


def volume_of(moto: MotoServer, namespace: str) -> dict[str, object]:
    [volume] = [
        v
        for v in namespace_volumes(moto.client(), namespace)
        if {"Key": "orlop:volume", "Value": NAME} in v.get("Tags", [])
    ]
    return volume


def fence_of(moto: MotoServer, namespace: str) -> str | None:
    tags = volume_of(moto, namespace).get("Tags", [])
    assert isinstance(tags, list)
    return next((t["Value"] for t in tags if t["Key"] == "orlop:fence"), None)


def holders(moto: MotoServer, namespace: str) -> list[str]:
    attachments = volume_of(moto, namespace)["Attachments"]
    assert isinstance(attachments, list)
    return [a["InstanceId"] for a in attachments if a["State"] != "detached"]


def test_a_host_restarted_with_old_state_does_not_mount_a_volume_taken_over(
    moto: MotoServer, two: tuple[str, list[SimulatedHost], list[OrlopDaemon]]
) -> None:
    driver, hosts, daemons = two
    a, b = (daemon.client(driver) for daemon in daemons)
    ids = [host.instance_id for host in hosts]
    namespace = hosts[0].settings["namespace"]

    a.ok("Create", Name=NAME, Opts={"size": "1G"})
    assert fence_of(moto, namespace) == f"1 {ids[0]}"  # the creator owns generation 1
    where_a = a.ok("Mount", Name=NAME, ID="a1")["Mountpoint"]
    assert fence_of(moto, namespace) == f"1 {ids[0]}"
    Path(where_a, "first").write_text("written on A")
    daemons[0].kill()  # A's Orlop dies; its kernel mount and state stay
    assert is_mountpoint(where_a)

    b.ok("Create", Name=NAME, Opts={"preempt": "true"})
    where_b = b.ok("Mount", Name=NAME, ID="b1")["Mountpoint"]
    assert fence_of(moto, namespace) == f"2 {ids[1]}"  # bumped by the preempt
    assert holders(moto, namespace) == [ids[1]]
    Path(where_b, "second").write_text("written on B")
    b.ok("Unmount", Name=NAME, ID="b1")
    # One kernel plays both hosts: B's mount shared the superblock of A's leftover one, so
    # B's unmount did not write its data back (a real B, its own kernel, does): sync does.
    os.sync()
    assert holders(moto, namespace) == []  # free: the cloud alone would let A take it back

    daemons[0].start()  # recovery of A's old state: its volume had a mount ID
    a = daemons[0].client(driver)
    deadline = time.monotonic() + 30
    while (now := a.ok("Get", Name=NAME)["Volume"])["Status"]["mounts"]:
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    fault = now["Status"]["fault"]
    assert f"{ids[1]} (fence generation 2)" in fault, now["Status"]
    assert "attached it under generation 1" in fault, now["Status"]
    assert not is_mountpoint(where_a)  # the leftover mount was dropped, not remounted
    assert holders(moto, namespace) == []
    assert fence_of(moto, namespace) == f"2 {ids[1]}"
    assert "taken over by instance" in daemons[0].log()

    # A user's new Mount on A is a new take-over of the free disk, under generation 3.
    where_a = a.ok("Mount", Name=NAME, ID="a2")["Mountpoint"]
    assert Path(where_a, "second").read_text() == "written on B"
    assert fence_of(moto, namespace) == f"3 {ids[0]}"
    a.ok("Unmount", Name=NAME, ID="a2")
    a.ok("Remove", Name=NAME)
    assert namespace_volumes(moto.client(), namespace) == []
