"""The cloud layer's decisions over the in-memory cloud (tests/support/cloud/memory.py): the
collaborators (`CloudCalls`, `Attacher`, `Adoption`) built as the driver builds them, with
the in-memory provider and block devices handed in. No root, no server, milliseconds."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.adopt import Adoption
from orlop.backends.cloud.api import CloudError, CloudSettings, ErrorKind
from orlop.backends.cloud.attach import Attacher
from orlop.backends.cloud.calls import CloudCalls
from orlop.backends.cloud.state import VolumeFiles
from orlop.core.model import BackendError, Conflict
from orlop.host.blockdevices import BlockDevices
from tests.support.cloud.memory import MemoryCloud

FAST = {
    "attach_timeout": 2.0,
    "detach_timeout": 2.0,
    "claim_settle": 0.05,
    "poll_max": 0.01,
    "api_retry_base": 0.001,
    "api_retry_cap": 0.002,
    "api_max_attempts": 4,
}


@dataclass
class Host:
    instance: str
    calls: CloudCalls
    files: VolumeFiles
    attacher: Attacher
    adoption: Adoption


def make_host(
    cloud: MemoryCloud, instance: str, root: Path, devices: BlockDevices | None = None
) -> Host:
    settings = CloudSettings.parse("memory", FAST)
    calls = CloudCalls(cloud.provider(instance), settings)
    files = VolumeFiles(str(root / instance))
    attacher = Attacher(calls, files, settings, devices or cloud.devices(instance))
    return Host(instance, calls, files, attacher, Adoption(calls, files, attacher))


def volume_on(host: Host, name: str = "vol", **options: str) -> VolumeRef:
    record = host.adoption.create(VolumeRef(name, dict(options)))
    return VolumeRef(name, dict(options), record)


@pytest.fixture
def cloud() -> MemoryCloud:
    return MemoryCloud(settle_reads=2)


def test_a_disk_held_elsewhere_is_refused_naming_the_holder_then_preempted(
    cloud: MemoryCloud, tmp_path: Path
) -> None:
    a, b = make_host(cloud, "i-a", tmp_path), make_host(cloud, "i-b", tmp_path)
    on_a = volume_on(a)
    disk_id = on_a.record["disk_id"]
    assert a.attacher.attach(on_a) == f"/dev/memory/{disk_id}"
    assert cloud.holders(disk_id) == ["i-a"]

    on_b = volume_on(b)
    assert on_b.record["adopted"] is True and on_b.record["disk_id"] == disk_id
    with pytest.raises(Conflict, match="attached to instance i-a: unmount it there"):
        b.attacher.attach(on_b)
    assert cloud.holders(disk_id) == ["i-a"]

    preempting = VolumeRef("vol", {"preempt": "true"}, on_b.record)
    assert b.attacher.attach(preempting) == f"/dev/memory/{disk_id}"
    assert cloud.holders(disk_id) == ["i-b"]
    assert b.files.attachment("vol")["instance"] == "i-b"  # type: ignore[index]


def test_recovery_never_takes_a_disk_back_from_its_new_holder(
    cloud: MemoryCloud, tmp_path: Path
) -> None:
    a, b = make_host(cloud, "i-a", tmp_path), make_host(cloud, "i-b", tmp_path)
    on_a = volume_on(a)
    b.attacher.attach(VolumeRef("vol", {"preempt": "true"}, on_a.record))
    repair = VolumeRef("vol", {"preempt": "true"}, on_a.record, repair=True)
    with pytest.raises(Conflict, match="i-b now: not taking it back after a restart"):
        a.attacher.attach(repair)
    assert cloud.holders(on_a.record["disk_id"]) == ["i-b"]


@pytest.mark.parametrize("refuses", [True, False], ids=["cloud-refuses", "claim-guard"])
def test_two_hosts_racing_to_attach_one_wins(tmp_path: Path, refuses: bool) -> None:
    cloud = MemoryCloud(refuses_second_attach=refuses, settle_reads=2, latency=0.005)
    hosts = [make_host(cloud, f"i-{n}", tmp_path) for n in range(3)]
    record = volume_on(hosts[0]).record
    outcomes: dict[str, str] = {}
    start = threading.Barrier(len(hosts))

    def attach(host: Host) -> None:
        start.wait()
        try:
            host.attacher.attach(VolumeRef("vol", {}, record))
            outcomes[host.instance] = "attached"
        except Conflict as error:
            outcomes[host.instance] = str(error)

    threads = [threading.Thread(target=attach, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    winners = [name for name, outcome in outcomes.items() if outcome == "attached"]
    assert len(winners) == 1, outcomes
    assert cloud.holders(record["disk_id"]) == winners
    assert all(winners[0] in outcome or outcome == "attached" for outcome in outcomes.values())


def test_a_failed_attach_call_leaves_nothing_attached(cloud: MemoryCloud, tmp_path: Path) -> None:
    a = make_host(cloud, "i-a", tmp_path)
    on_a = volume_on(a)
    cloud.fail_next("attach_disk", ErrorKind.FAILED)
    with pytest.raises(BackendError, match=r"attaching vol \(mem-1\)"):
        a.attacher.attach(on_a)
    assert cloud.holders("mem-1") == []
    assert a.files.attachment("vol") is None


class NoDevices:
    def find(self, paths: Iterable[str]) -> str | None:
        return None

    def size(self, device: str) -> int:
        return 0


def test_no_device_appearing_detaches_again(cloud: MemoryCloud, tmp_path: Path) -> None:
    a = make_host(cloud, "i-a", tmp_path, devices=NoDevices())
    a.attacher.settings = a.attacher.settings.model_copy(update={"attach_timeout": 0.1})
    on_a = volume_on(a)
    with pytest.raises(BackendError, match=r"no block device appeared.*detached it again"):
        a.attacher.attach(on_a)
    assert cloud.holders("mem-1") == []
    assert a.files.attachment("vol") is None


def test_an_attach_waits_out_a_detach_in_flight(tmp_path: Path) -> None:
    cloud = MemoryCloud(settle_reads=5)
    a, b = make_host(cloud, "i-a", tmp_path), make_host(cloud, "i-b", tmp_path)
    on_a = volume_on(a)
    a.attacher.attach(on_a)
    cloud.set_state("mem-1", "i-a", "detaching")  # A's unmount: the cloud has not finished
    b.attacher.attach(VolumeRef("vol", {}, on_a.record))  # no preempt needed: it is leaving
    assert cloud.holders("mem-1") == ["i-b"]
    assert ("i-b", "detach_disk") not in cloud.calls  # waited; forced nothing


def test_throttling_is_retried_then_reported(cloud: MemoryCloud, tmp_path: Path) -> None:
    a = make_host(cloud, "i-a", tmp_path)
    on_a = volume_on(a)
    cloud.throttle(3)
    a.attacher.attach(on_a)
    assert cloud.holders("mem-1") == ["i-a"]
    cloud.throttle(FAST["api_max_attempts"])  # type: ignore[arg-type]
    with pytest.raises(CloudError, match="still throttled after 4 attempts"):
        a.calls.get("mem-1")


def test_discovery_sees_holders_and_remove_refuses_while_held_elsewhere(
    cloud: MemoryCloud, tmp_path: Path
) -> None:
    a, b = make_host(cloud, "i-a", tmp_path), make_host(cloud, "i-b", tmp_path)
    on_a = volume_on(a, "Db.Main")
    [(name, options, record)] = b.adoption.list_volumes()
    assert (name, options["size"], record["disk_id"]) == ("Db.Main", str(1024**3), "mem-1")
    assert b.adoption.last_holders == {"Db.Main": []}
    a.attacher.attach(on_a)
    b.adoption.list_volumes()
    assert b.adoption.last_holders == {"Db.Main": ["i-a"]}
    with pytest.raises(Conflict, match="attached to instance i-a: unmount it there first"):
        b.adoption.remove(VolumeRef("Db.Main", {}, record))
    cloud.set_state("mem-1", "i-a", "detaching")
    b.adoption.list_volumes()
    assert b.adoption.last_holders == {"Db.Main": []}  # leaving: not a holder
    a.adoption.remove(on_a)
    assert cloud.disks == {}
