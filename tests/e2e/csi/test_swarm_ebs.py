"""A cloud disk (EBS) as a Swarm cluster volume: it follows its task from node to node.

The session's three-node Swarm (tests/e2e/csi/fixtures.py), the Orlop EBS CSI plugin
(`scripts/build-plugin ebs --csi`) on each node, each node one instance of the EC2 test
server. Swarm's manager is the CSI controller; the disk is attached by the Orlop of the node
that stages it, and shows there as a real loop device. A watcher samples EC2 and the nodes'
devices every 0.1 s for the whole test: never two instances holding the disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.e2e.csi.fixtures import IMAGE, EbsSwarm, wait_until
from tests.integration.csi.client import CsiClient
from tests.support.managed_plugin import plugin_socket
from tests.support.names import unique

pytest_plugins = ["tests.e2e.csi.fixtures"]

WRITER = (
    "i=$(wc -l < /data/rows 2>/dev/null || echo 0); "
    "while true; do i=$((i+1)); echo $i >> /data/rows; sync; sleep 0.1; done"
)


class Watcher(threading.Thread):
    """The most instances EC2 showed the disk attached to, and the most nodes presenting
    it, at any one sample."""

    def __init__(self, swarm: EbsSwarm, volume: str) -> None:
        super().__init__(daemon=True, name="ebs-watcher")
        self.swarm, self.volume = swarm, volume
        self.most_holders: list[str] = []
        self.most_presenting: list[str] = []
        self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            holders = self.swarm.holders(self.volume)
            presenting = self.swarm.presenting(self.volume)
            self.samples += 1
            if len(holders) > len(self.most_holders):
                self.most_holders = holders
            if len(presenting) > len(self.most_presenting):
                self.most_presenting = presenting


@contextmanager
def watching(swarm: EbsSwarm, volume: str) -> Iterator[Watcher]:
    watcher = Watcher(swarm, volume)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stopping.set()
        watcher.join(timeout=10)


def rows_in(swarm: EbsSwarm, service: str, node_id: str) -> list[str]:
    """The rows the task on `node_id` sees in its volume (read in its own container)."""
    node, container = swarm.container_of(service, node_id)
    return node.run("exec", container, "cat", "/data/rows", check=False).stdout.split()


def live_disks(swarm: EbsSwarm) -> set[str]:
    return {d["VolumeId"] for d in swarm.disks() if d["State"] != "deleted"}


def known_to_orlop(swarm: EbsSwarm, volume: str) -> list[str]:
    """The nodes whose Orlop (asked on its plugin's CSI socket) still lists `volume`."""
    found = []
    for node in swarm.swarm.nodes:
        client = CsiClient(plugin_socket(node, swarm.plugin, "csi.sock"))
        try:
            listed = client.call("ListVolumes").entries
        finally:
            client.close()
        if volume in {entry.volume.volume_id for entry in listed}:
            found.append(node.name)
    return found


def mounts_of(swarm: EbsSwarm, volume: str) -> list[str]:
    """Mount table lines naming `volume`, on the host and in every node's plugins."""
    found = []
    pids = ["self"] + [str(pid) for node in swarm.swarm.nodes for pid in node.plugin_pids()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/mountinfo") as table:
                found += [line for line in table if volume in line]
        except OSError:
            continue  # a process that ended meanwhile
    return found


@pytest.mark.skip(
    reason="unfinished: after the constraint moves the task, Swarm publishes the disk to the "
    "new node before the old node's NodeUnstage detached it; Orlop's NodeStage there refuses "
    "(attached to the old instance) and Swarm's backoff outlasts the wait"
)
def test_a_disk_follows_its_task_to_another_node(ebs_swarm: EbsSwarm) -> None:
    volume, service = unique("disk"), unique("db")
    _, first, second = ebs_swarm.swarm.nodes  # both workers: the manager is the controller
    first_id, second_id = first.node_id(), second.node_id()

    def runs_on(node_id: str) -> Callable[[], bool]:
        return lambda: ebs_swarm.running_on(service) == [node_id]

    with watching(ebs_swarm, volume) as watcher:
        ebs_swarm.create_volume(volume, "--required-bytes", "1G", sharing="none", scope="single")
        wait_until("volume created", lambda: "Info" in ebs_swarm.volume(volume)["ClusterVolume"])
        tag = {"Key": "orlop:volume", "Value": volume}
        (disk,) = [d for d in ebs_swarm.disks() if tag in d.get("Tags", [])]
        assert disk["Size"] == 1 and disk["Attachments"] == []  # made, attached nowhere yet
        ebs_swarm.docker(
            "service", "create", "--detach", "--name", service,
            "--constraint", f"node.id=={first_id}",
            "--mount", f"type=cluster,src={volume},dst=/data", IMAGE, "sh", "-c", WRITER,
        )  # fmt: skip
        try:
            wait_until("running on the first worker", runs_on(first_id), timeout=120)
            wait_until("rows written", lambda: len(rows_in(ebs_swarm, service, first_id)) >= 5)
            assert ebs_swarm.holders(volume) == [ebs_swarm.instances[first.name]]
            acknowledged = rows_in(ebs_swarm, service, first_id)

            started = time.monotonic()
            ebs_swarm.docker(
                "service", "update", "--detach", "--constraint-rm", f"node.id=={first_id}",
                "--constraint-add", f"node.id=={second_id}", service,
            )  # fmt: skip
            wait_until("running on the second worker", runs_on(second_id), timeout=120)
            moved = time.monotonic() - started
            count = len(rows_in(ebs_swarm, service, second_id))
            wait_until(
                "rows written there",
                lambda: len(rows_in(ebs_swarm, service, second_id)) > count + 3,
            )
            after = rows_in(ebs_swarm, service, second_id)
            print(f"EBS cluster volume: constraint moved → running on the other node {moved:.1f} s")
            assert after[: len(acknowledged)] == acknowledged  # every acknowledged row is there
            assert ebs_swarm.holders(volume) == [ebs_swarm.instances[second.name]]
            assert ebs_swarm.presenting(volume) == [second.name]
        finally:
            ebs_swarm.docker("service", "rm", service, check=False)
        wait_until("unpublished", lambda: not ebs_swarm.published(volume), timeout=120)
        wait_until("detached", lambda: not ebs_swarm.holders(volume))
        ebs_swarm.docker("volume", "rm", volume)
        wait_until("volume removed", lambda: volume not in ebs_swarm.cluster_volumes())
    assert watcher.samples > 50
    assert len(watcher.most_holders) == 1, f"EC2 showed the disk on {watcher.most_holders}"
    assert len(watcher.most_presenting) == 1, f"presented on {watcher.most_presenting}"
    # Nothing leaked: the disk is deleted, no mount of it anywhere, no Orlop lists it.
    wait_until("disk deleted", lambda: disk["VolumeId"] not in live_disks(ebs_swarm))
    assert mounts_of(ebs_swarm, volume) == []
    assert known_to_orlop(ebs_swarm, volume) == []
