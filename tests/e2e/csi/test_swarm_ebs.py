"""A cloud disk (EBS) as a Swarm cluster volume: it follows its task from node to node.

The session's three-node Swarm (tests/e2e/csi/fixtures.py), the Orlop EBS CSI plugin
(`scripts/build-plugin ebs --csi`) on each node, each node one instance of the EC2 test
server. Swarm's manager is the CSI controller; the disk is attached by the Orlop of the node
that stages it, and shows there as a real loop device. A drain moves the writer and its disk
(the old node releases it at its NodeUnpublish, the new one's NodeStage waits for it); a
killed holder's task comes back on the other worker once the dead node's agent let go. A
watcher samples EC2 and the nodes' devices every 0.1 s for the whole test: never two
instances holding the disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.e2e.csi.fixtures import IMAGE, EbsSwarm, wait_until
from tests.integration.csi.client import CsiClient
from tests.support.managed_plugin import plugin_socket
from tests.support.names import unique
from tests.support.swarm import SwarmNode

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


def start_writer(ebs_swarm: EbsSwarm, volume: str, service: str) -> str:
    """A 1 GB cluster volume and a one-replica writer on a worker; the disk's EBS ID."""
    ebs_swarm.create_volume(volume, "--required-bytes", "1G", sharing="none", scope="single")
    wait_until("volume created", lambda: "Info" in ebs_swarm.volume(volume)["ClusterVolume"])
    tag = {"Key": "orlop:volume", "Value": volume}
    (disk,) = [d for d in ebs_swarm.disks() if tag in d.get("Tags", [])]
    assert disk["Size"] == 1 and disk["Attachments"] == []  # made, attached nowhere yet
    ebs_swarm.docker(
        "service", "create", "--detach", "--name", service, "--stop-grace-period", "1s",
        "--constraint", "node.role==worker",  # the manager is the controller
        "--mount", f"type=cluster,src={volume},dst=/data", IMAGE, "sh", "-c", WRITER,
    )  # fmt: skip
    return str(disk["VolumeId"])


def runs_on(ebs_swarm: EbsSwarm, service: str, node_id: str) -> Callable[[], bool]:
    return lambda: ebs_swarm.running_on(service) == [node_id]


def first_task(ebs_swarm: EbsSwarm, service: str) -> tuple[SwarmNode, SwarmNode]:
    """The worker running the writer (once it wrote rows), and the other worker."""
    wait_until("running on a worker", lambda: len(ebs_swarm.running_on(service)) == 1, 120)
    (node_id,) = ebs_swarm.running_on(service)
    wait_until("rows written", lambda: len(rows_in(ebs_swarm, service, node_id)) >= 5)
    _, *workers = ebs_swarm.swarm.nodes
    (first,) = [n for n in workers if n.node_id() == node_id]
    (second,) = [n for n in workers if n is not first]
    return first, second


def goes_on_writing(ebs_swarm: EbsSwarm, service: str, node: SwarmNode) -> list[str]:
    """The rows the task on `node` sees, once it wrote a few more."""
    node_id = node.node_id()
    count = len(rows_in(ebs_swarm, service, node_id))
    wait_until("rows written there", lambda: len(rows_in(ebs_swarm, service, node_id)) > count + 3)
    return rows_in(ebs_swarm, service, node_id)


def remove_all(ebs_swarm: EbsSwarm, volume: str, disk_id: str) -> None:
    """The volume unpublished, detached, removed: nothing of it left anywhere."""
    wait_until("unpublished", lambda: not ebs_swarm.published(volume), timeout=120)
    wait_until("detached", lambda: not ebs_swarm.holders(volume))
    ebs_swarm.docker("volume", "rm", volume)
    wait_until("volume removed", lambda: volume not in ebs_swarm.cluster_volumes())
    wait_until("disk deleted", lambda: disk_id not in live_disks(ebs_swarm))
    assert mounts_of(ebs_swarm, volume) == []
    # Every node that staged it forgets it at its next discovery (the disk is gone).
    wait_until("no Orlop lists it", lambda: known_to_orlop(ebs_swarm, volume) == [], 60)


def never_twice(watcher: Watcher) -> None:
    assert watcher.samples > 50
    assert len(watcher.most_holders) == 1, f"EC2 showed the disk on {watcher.most_holders}"
    assert len(watcher.most_presenting) == 1, f"presented on {watcher.most_presenting}"


def test_a_drain_moves_the_task_and_its_disk(ebs_swarm: EbsSwarm) -> None:
    volume, service = unique("disk"), unique("db")
    with watching(ebs_swarm, volume) as watcher:
        disk_id = start_writer(ebs_swarm, volume, service)
        try:
            first, second = first_task(ebs_swarm, service)
            assert ebs_swarm.holders(volume) == [ebs_swarm.instances[first.name]]
            acknowledged = rows_in(ebs_swarm, service, first.node_id())
            started = time.monotonic()
            ebs_swarm.docker("node", "update", "--availability", "drain", first.node_id())
            try:
                wait_until(
                    "running on the other worker",
                    runs_on(ebs_swarm, service, second.node_id()),
                    timeout=120,
                )
                moved = time.monotonic() - started
                after = goes_on_writing(ebs_swarm, service, second)
            finally:
                ebs_swarm.docker("node", "update", "--availability", "active", first.node_id())
            print(f"EBS cluster volume: drain → running on the other worker {moved:.1f} s")
            assert after[: len(acknowledged)] == acknowledged  # every acknowledged row
            assert ebs_swarm.holders(volume) == [ebs_swarm.instances[second.name]]
            assert ebs_swarm.presenting(volume) == [second.name]
        finally:
            ebs_swarm.docker("service", "rm", service, check=False)
        remove_all(ebs_swarm, volume, disk_id)
    never_twice(watcher)


def test_a_killed_holder_s_task_comes_back_elsewhere(ebs_swarm: EbsSwarm) -> None:
    volume, service = unique("disk"), unique("db")
    with watching(ebs_swarm, volume) as watcher:
        disk_id = start_writer(ebs_swarm, volume, service)
        try:
            victim, survivor = first_task(ebs_swarm, service)
            victim_id = victim.node_id()
            acknowledged = rows_in(ebs_swarm, service, victim_id)
            victim.kill9()  # its dockerd, Orlop and the writer: the disk stays attached there
            # The operator takes the dead node out; Swarm keeps the disk published there
            # until that node's agent says it let go, which it does when it comes back.
            ebs_swarm.docker("node", "update", "--availability", "drain", victim_id)
            try:
                ebs_swarm.restart(victim)
                wait_until(
                    "running on the other worker",
                    runs_on(ebs_swarm, service, survivor.node_id()),
                    timeout=180,
                )
                after = goes_on_writing(ebs_swarm, service, survivor)
            finally:
                ebs_swarm.docker("node", "update", "--availability", "active", victim_id)
            assert after[: len(acknowledged)] == acknowledged
            assert ebs_swarm.holders(volume) == [ebs_swarm.instances[survivor.name]]
            assert ebs_swarm.presenting(volume) == [survivor.name]
        finally:
            ebs_swarm.docker("service", "rm", service, check=False)
        remove_all(ebs_swarm, volume, disk_id)
    never_twice(watcher)
