"""EBS volumes end to end through the service and the shared block layer.

EC2 is moto on 127.0.0.1; the disks are real loop devices presented where an instance
would see them, so format, mount, write, detach and re-attach all run for real.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orlop.backends.cloud.ebs.backend import EbsBackend
from orlop.core.model import BackendError, Conflict, InvalidOption, NotFound, State
from orlop.host.mounts import mounted_paths
from tests.contracts.cloud import CloudDiskConformance
from tests.servers.ec2.server import EbsTestbed, MotoServer, SimulatedHost
from tests.support.harness import Harness
from tests.support.names import unique

pytest_plugins = ["tests.servers.ec2.fixtures"]

Host = Callable[..., SimulatedHost]


@pytest.fixture
def harnesses(tmp_path: Path) -> Iterator[Callable[[EbsBackend], Harness]]:
    made: list[Harness] = []

    def make(backend: EbsBackend) -> Harness:
        harness = Harness(backend, unique("ebs"), store_path=str(tmp_path / f"{len(made)}.db"))
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            for volume in harness.service.list(harness.driver):
                for mount_id in list(volume.mount_ids):
                    with contextlib.suppress(Exception):
                        harness.unmount(volume.name, mount_id)
            harness.close()


def ec2_state(moto: MotoServer, volume_id: str) -> list[str]:
    volume = moto.client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return [a["InstanceId"] for a in volume["Attachments"] if a["State"] != "detached"]


def test_create_mount_write_detach_reattach_read(
    ec2_host: Host, harnesses: Callable[[EbsBackend], Harness], moto: MotoServer
) -> None:
    host = ec2_host()
    harness = harnesses(host.backend())
    volume = harness.create("db", size="8G", type="gp3", iops="4000", throughput="250")
    volume_id = volume.record["disk_id"]
    facts = harness.service.backend_facts(volume)
    assert facts["volume_id"] == volume_id and facts["type"] == "gp3"
    assert facts["size_gib"] == 8 and facts["iops"] == 4000 and facts["throughput"] == 250
    assert facts["availability_zone"] == "us-east-1a" and facts["encrypted"] is False
    assert facts["attachment"] is None and facts["fs"] == "ext4"

    path = harness.mount("db", "c1")
    assert path in mounted_paths()
    assert ec2_state(moto, volume_id) == [host.instance_id]
    attachment = harness.service.backend_facts(harness.get("db"))["attachment"]
    assert attachment["instance"] == host.instance_id and attachment["device_name"]
    payload = os.urandom(64 * 1024)
    Path(path, "table").write_bytes(payload)
    harness.unmount("db", "c1")
    assert path not in mounted_paths()
    assert ec2_state(moto, volume_id) == []
    assert harness.get("db").state == State.READY

    path = harness.mount("db", "c2")
    assert Path(path, "table").read_bytes() == payload
    harness.unmount("db", "c2")
    harness.remove("db")
    assert (
        moto.client().describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume_id]}])[
            "Volumes"
        ]
        == []
    )


def test_second_host_mounts_by_name_and_preempts(
    ec2_host: Host, harnesses: Callable[[EbsBackend], Harness], moto: MotoServer
) -> None:
    first, second = ec2_host(style="xen"), ec2_host(style="nvme")
    on_a, on_b = harnesses(first.backend()), harnesses(second.backend())
    volume_id = on_a.create("shared", size="1G").record["disk_id"]
    Path(on_a.mount("shared", "a1"), "from-a").write_text("written on host A")

    # Host B has never heard of it: Docker's create-on-demand sends no options.
    adopted = on_b.create("shared")
    assert adopted.record["disk_id"] == volume_id
    with pytest.raises(Conflict, match=f"attached to instance {first.instance_id}"):
        on_b.mount("shared", "b1")
    assert ec2_state(moto, volume_id) == [first.instance_id]
    assert on_b.get("shared").state == State.READY and on_b.get("shared").mounts == 0

    on_a.unmount("shared", "a1")
    path_b = on_b.mount("shared", "b1")
    assert Path(path_b, "from-a").read_text() == "written on host A"
    Path(path_b, "from-b").write_text("written on host B")

    # Host A, with preempt as a per-volume option, takes it back by force.
    forced = harnesses(first.backend())
    forced.create("shared", preempt="true")
    path_a = forced.mount("shared", "a2")
    assert ec2_state(moto, volume_id) == [first.instance_id]
    assert Path(path_a, "from-b").read_text() == "written on host B"
    forced.unmount("shared", "a2")
    on_b.unmount("shared", "b1")  # its device is gone already: unmount and forget
    forced.remove("shared")


def test_device_that_never_appears(
    ec2_host: Host, harnesses: Callable[[EbsBackend], Harness], moto: MotoServer
) -> None:
    harness = harnesses(ec2_host(present=False).backend(attach_timeout=1))
    volume_id = harness.create("ghost", size="1G").record["disk_id"]
    with pytest.raises(BackendError, match="no block device appeared within 1s"):
        harness.mount("ghost", "c1")
    assert ec2_state(moto, volume_id) == []
    assert harness.get("ghost").mounts == 0 and harness.get("ghost").state == State.READY
    harness.remove("ghost")


def test_snapshots_through_the_service(
    ec2_host: Host, harnesses: Callable[[EbsBackend], Harness]
) -> None:
    # moto's snapshots hold no data: the flow is checked, not the restored bytes.
    harness = harnesses(ec2_host().backend())
    harness.create("src", size="1G")
    path = harness.mount("src", "c1")  # mounted: frozen for the snapshot, then thawed
    made = harness.run(harness.service.create_snapshot(harness.driver, "src", "before-upgrade"))
    writer = threading.Thread(target=Path(path, "after").write_text, args=("thawed",))
    writer.start()
    writer.join(10)  # a write to a filesystem left frozen would block here
    assert not writer.is_alive() and Path(path, "after").read_text() == "thawed"
    harness.unmount("src", "c1")
    assert made["name"] == "before-upgrade" and made["driver"] == harness.driver
    default_named = harness.run(harness.service.create_snapshot(harness.driver, "src"))
    assert default_named["name"].startswith("src-")
    listed = harness.run(harness.service.list_snapshots(harness.driver, "src"))
    assert {s["name"] for s in listed} == {"before-upgrade", default_named["name"]}
    restored = harness.create("restored", from_snapshot="before-upgrade")
    assert restored.record["snapshot_id"] == made["id"]
    with pytest.raises(NotFound):
        harness.create("nope", from_snapshot="no-such-snapshot")
    assert "nope" not in harness.names()
    for snapshot in ("before-upgrade", default_named["id"]):
        harness.run(harness.service.delete_snapshot(harness.driver, snapshot))
    assert harness.run(harness.service.list_snapshots(harness.driver)) == []
    with pytest.raises(NotFound):
        harness.run(harness.service.create_snapshot(harness.driver, "missing"))
    harness.remove("restored")
    harness.remove("src")


def test_bad_input_leaves_nothing(
    ec2_host: Host, harnesses: Callable[[EbsBackend], Harness], moto: MotoServer, namespace: str
) -> None:
    harness = harnesses(ec2_host().backend())
    refused = {
        "size below type minimum": ({"type": "io1", "size": "2G", "iops": "100"}, "4 to 16384"),
        "size above type maximum": ({"type": "gp2", "size": "17T"}, "1 to 16384 GiB"),
        "iops on gp2": ({"type": "gp2", "iops": "3000"}, "takes no iops option"),
        "throughput on io2": (
            {"type": "io2", "iops": "1000", "throughput": "200"},
            "takes no throughput",
        ),
        "unknown type": ({"type": "gp9"}, "use one of gp3, gp2, io1, io2, st1, sc1"),
        "unknown zone": ({"availability_zone": "us-east-1x"}, "unknown availability zone"),
        "kms without encryption": ({"kms_key_id": "alias/x"}, "needs encrypted=true"),
    }
    for case, (options, message) in refused.items():
        with pytest.raises(InvalidOption, match=message):
            harness.create("bad", **options)
        assert harness.names() == [], case
    assert [
        v["VolumeId"]
        for v in moto.client().describe_volumes()["Volumes"]
        if any(t["Value"] == namespace for t in v.get("Tags", []))
    ] == []


def test_missing_credentials_refused_before_anything_is_made(
    ec2_host: Host,
    harnesses: Callable[[EbsBackend], Harness],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    host = ec2_host()
    harness = harnesses(host.backend(access_key_id=None, secret_access_key=None))
    with pytest.raises(Exception, match="no AWS credentials: set access_key_id"):
        harness.create("nocreds", size="1G")
    assert harness.names() == []


class TestEbsConformance(CloudDiskConformance):
    create_options = {"size": "1G"}
    other_options = {"size": "2G"}
    size_limit = 1024**3

    @pytest.fixture
    def testbed(self, ebs_testbed: EbsTestbed) -> EbsTestbed:
        return ebs_testbed


def test_resize_online_grows_device_and_filesystem(
    ec2_host: Host, harnesses: Callable[[EbsBackend], Harness], moto: MotoServer
) -> None:
    harness = harnesses(ec2_host().backend())
    volume = harness.create("growing", size="1G", fs="xfs")
    path = harness.mount("growing", "c1")
    before = os.statvfs(path)
    grown = harness.run(harness.service.resize(harness.driver, "growing", 2 * 1024**3))
    after = os.statvfs(path)
    assert after.f_blocks * after.f_frsize > 1.8 * before.f_blocks * before.f_frsize
    assert grown.record["size"] == 2 * 1024**3
    ec2 = moto.client().describe_volumes(VolumeIds=[volume.record["disk_id"]])["Volumes"][0]
    assert ec2["Size"] == 2
    harness.unmount("growing", "c1")
    harness.remove("growing")
