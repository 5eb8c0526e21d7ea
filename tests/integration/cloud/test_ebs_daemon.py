"""Two real `orlop serve` daemons, one per simulated EC2 instance, sharing EBS volumes.

Docker's protocol on each daemon's socket, the CLI for snapshots, EC2 (moto) as the only
thing the two hosts share: host B learns of host A's volume from EC2's tags, not from A.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers.ec2.server import MotoServer, SimulatedHost
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytest_plugins = ["tests.servers.ec2.fixtures"]

Host = Callable[..., SimulatedHost]


@pytest.fixture
def daemons() -> Iterator[Callable[[dict[str, dict[str, object]]], OrlopDaemon]]:
    started: list[OrlopDaemon] = []

    def start(drivers: dict[str, dict[str, object]]) -> OrlopDaemon:
        daemon = OrlopDaemon(drivers)
        started.append(daemon)
        return daemon.start()

    try:
        yield start
    finally:
        for daemon in started:
            daemon.destroy()


def wait_listed(daemon: OrlopDaemon, driver: str, name: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = daemon.client(driver).ok("List")["Volumes"]
        if any(v["Name"] == name for v in listed):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} not listed by {driver} within {timeout}s")


def attachments_of(moto: MotoServer, volume_id: str) -> list[str]:
    volume = moto.client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return [a["InstanceId"] for a in volume["Attachments"] if a["State"] != "detached"]


def test_two_daemons_share_a_volume_by_name(
    ec2_host: Host,
    moto: MotoServer,
    daemons: Callable[[dict[str, dict[str, object]]], OrlopDaemon],
) -> None:
    secret = f"orlop-secret-{secrets.token_hex(8)}"  # moto takes any key; it must not leak
    driver = unique("ebs")
    host_a, host_b = ec2_host(style="xen"), ec2_host(style="nvme")
    configs = []
    for host in (host_a, host_b):
        config = host.driver_config(fs="ext4")
        config["settings"] = {**config["settings"], "secret_access_key": secret}
        config["settings"]["discover_interval"] = 0.5
        configs.append(config)
    daemon_a = daemons({driver: configs[0]})
    daemon_b = daemons({driver: configs[1]})
    a, b = daemon_a.client(driver), daemon_b.client(driver)

    a.ok("Create", Name="ebs-vol", Opts={"size": "1G"})
    mountpoint = a.ok("Mount", Name="ebs-vol", ID="c-a")["Mountpoint"]
    Path(mountpoint, "hello").write_text("from host A")
    a.ok("Unmount", Name="ebs-vol", ID="c-a")

    # Host B lists the volume without anyone creating it there: EC2's tags say it exists.
    wait_listed(daemon_b, driver, "ebs-vol")
    status = b.ok("Get", Name="ebs-vol")["Volume"]["Status"]
    facts = status["backend_status"]
    assert facts["volume_id"].startswith("vol-") and facts["availability_zone"] == "us-east-1a"
    assert facts["type"] == "gp3" and facts["size_gib"] == 1 and facts["encrypted"] is False
    mountpoint_b = b.ok("Mount", Name="ebs-vol", ID="c-b")["Mountpoint"]
    assert Path(mountpoint_b, "hello").read_text() == "from host A"
    attached = b.ok("Get", Name="ebs-vol")["Volume"]["Status"]["backend_status"]["attachment"]
    assert attached["instance"] == host_b.instance_id

    # While B holds it, A is refused with the holder's name (no preempt configured).
    refused = a.call("Mount", Name="ebs-vol", ID="c-a2")
    assert f"attached to instance {host_b.instance_id}" in refused["Err"]
    # The README's way to take it over from A: create it there with preempt=true (how A
    # mounts it, not what it is: no conflict with the discovered volume), then mount.
    a.ok("Create", Name="ebs-vol", Opts={"preempt": "true"})
    taken = a.ok("Mount", Name="ebs-vol", ID="c-a3")["Mountpoint"]
    assert Path(taken, "hello").read_text() == "from host A"
    assert attachments_of(moto, facts["volume_id"]) == [host_a.instance_id]
    a.ok("Unmount", Name="ebs-vol", ID="c-a3")
    b.ok("Unmount", Name="ebs-vol", ID="c-b")  # B's disk was taken: its unmount still ends
    differs = a.call("Create", Name="ebs-vol", Opts={"size": "2G"})
    assert "already exists with different options (size:" in differs["Err"]

    # Snapshots through the CLI, seen from both hosts.
    made = daemon_a.cli("snapshot", "create", "ebs-vol", "nightly").stdout.split()
    assert made[0] == "nightly" and made[1].startswith("snap-")
    listed = json.loads(daemon_b.cli("snapshot", "ls", "ebs-vol", "--json").stdout)
    assert [(s["name"], s["id"], s["volume"]) for s in listed] == [("nightly", made[1], "ebs-vol")]
    table = daemon_b.cli("snapshot", "ls").stdout
    assert "nightly" in table and made[1] in table
    b.ok("Create", Name="restored", Opts={"from_snapshot": "nightly"})
    missing = daemon_a.cli("snapshot", "rm", "no-such-snapshot", check=False)
    assert missing.returncode == 1 and "no snapshot named no-such-snapshot" in missing.stderr
    daemon_b.cli("snapshot", "rm", "nightly")
    assert json.loads(daemon_a.cli("snapshot", "ls", "--json").stdout) == []

    a.ok("Remove", Name="ebs-vol")
    b.ok("Remove", Name="restored")
    for daemon in (daemon_a, daemon_b):
        inspected = daemon.cli("volume", "inspect", "--driver", driver, "ebs-vol", check=False)
        assert secret not in daemon.log() and secret not in inspected.stdout
    assert [
        v
        for v in moto.client().describe_volumes()["Volumes"]
        if any(t["Value"] == host_a.settings["namespace"] for t in v.get("Tags", []))
    ] == []


@pytest.mark.parametrize(
    ("failpoint", "left_in_ec2"),
    [("block.after_create", False), ("block.after_attach_device", True)],
)
def test_crash_leaves_no_half_volume_and_no_attachment(
    ec2_host: Host,
    moto: MotoServer,
    daemons: Callable[[dict[str, dict[str, object]]], OrlopDaemon],
    failpoint: str,
    left_in_ec2: bool,
) -> None:
    host = ec2_host()
    driver = unique("ebs")
    daemon = daemons({driver: host.driver_config()})
    client = daemon.client(driver)
    if left_in_ec2:
        client.ok("Create", Name="crashy", Opts={"size": "1G"})
    daemon.stop()
    daemon.start(extra_env={"ORLOP_FAILPOINTS": failpoint}, wait=True)
    # The daemon dies mid-request, as with kill -9.
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        daemon.client(driver).call(
            "Mount" if left_in_ec2 else "Create", Name="crashy", ID="c1", Opts={"size": "1G"}
        )
    assert daemon.wait() == 86
    tagged = [
        v
        for v in moto.client().describe_volumes()["Volumes"]
        if any(t["Value"] == host.settings["namespace"] for t in v.get("Tags", []))
    ]
    assert len(tagged) == 1  # made in EC2 before the crash
    assert bool(tagged[0]["Attachments"]) == left_in_ec2

    daemon.start()  # recovery: finish or undo what the crash interrupted
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = [
            v
            for v in moto.client().describe_volumes()["Volumes"]
            if v["VolumeId"] == tagged[0]["VolumeId"]
        ]
        if (bool(now) == left_in_ec2) and not (now and now[0]["Attachments"]):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"recovery did not settle {failpoint}: {now}\n{daemon.log()[-3000:]}")
    listed = [v["Name"] for v in daemon.client(driver).ok("List")["Volumes"]]
    assert listed == (["crashy"] if left_in_ec2 else [])
    if left_in_ec2:
        daemon.client(driver).ok("Remove", Name="crashy")
