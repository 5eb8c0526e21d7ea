"""The EBS provider against a real EC2-API server (moto) with real loop devices as the disks.

These drive the DeviceProvider directly: the device that appears is a real block device, so
bytes written through one attachment are read back through the next, on another host too.
The filesystem layer on top is tested through BlockBackend in test_ebs_block.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

import pytest

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.api import CloudError
from orlop.backends.cloud.layer import CloudDisks
from orlop.core.model import BackendError, Conflict, InvalidOption, NotFound
from tests.servers.ec2.server import Ec2Proxy, MotoServer, SimulatedHost, namespace_volumes
from tests.support.cloud.deviceio import read_at, write_at
from tests.support.race import race

pytest_plugins = ["tests.servers.ec2.fixtures"]

Host = Callable[..., SimulatedHost]


def make(provider: CloudDisks, name: str, **options: str) -> VolumeRef:
    canonical = provider.options.validate(options)
    provider.validate(name, canonical)
    ref = VolumeRef(name, canonical)
    ref.record = provider.create(ref)
    return ref


def attachments(moto: MotoServer, volume_id: str) -> list[dict[str, Any]]:
    volume = moto.client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return [a for a in volume["Attachments"] if a["State"] != "detached"]


@pytest.mark.parametrize("style", ["nvme", "xen"])
def test_attach_write_detach_reattach_on_another_host(
    ec2_host: Host, moto: MotoServer, style: str
) -> None:
    first, second = ec2_host(style=style), ec2_host(style=style)
    provider_a, provider_b = first.provider(), second.provider()
    volume = make(provider_a, "data", size="1G")
    volume_id = volume.record["disk_id"]
    assert volume.record["size"] == 1024**3 and volume.record["type"] == "gp3"

    device = provider_a.attach_device(volume)
    assert stat.S_ISBLK(os.stat(device).st_mode) and device.startswith("/dev/loop")
    assert provider_a.device_path(volume) == device
    assert [a["InstanceId"] for a in attachments(moto, volume_id)] == [first.instance_id]
    facts = provider_a.describe(volume)
    assert facts["volume_id"] == volume_id and facts["attachment"]["instance"]
    payload = os.urandom(4096)
    write_at(device, 1024**2, payload)
    provider_a.attach_device(volume)  # attached already: the same device, no second attach
    assert first.node.appeared[volume_id] == 1

    provider_a.detach_device(volume)
    assert attachments(moto, volume_id) == []
    assert provider_a.device_path(volume) is None
    assert provider_a.describe(volume)["attachment"] is None
    provider_a.detach_device(volume)  # not attached: not an error

    # Host B knows the volume by name only: Create adopts it.
    adopted = make(provider_b, "data")
    assert adopted.record["disk_id"] == volume_id and adopted.record["adopted"]
    device_b = provider_b.attach_device(adopted)
    assert read_at(device_b, 1024**2, 4096) == payload
    provider_b.detach_device(adopted)
    provider_b.remove(adopted)
    assert namespace_volumes(moto.client(), first.settings["namespace"]) == []


def test_preemption_refused_then_forced(ec2_host: Host, moto: MotoServer) -> None:
    first, second = ec2_host(), ec2_host()
    provider_a = first.provider()
    volume = make(provider_a, "db", size="1G")
    provider_a.attach_device(volume)
    volume_b = make(second.provider(), "db")
    with pytest.raises(Conflict, match=f"attached to instance {first.instance_id}.*preempt=true"):
        second.provider().attach_device(volume_b)
    assert [a["InstanceId"] for a in attachments(moto, volume.record["disk_id"])] == [
        first.instance_id
    ]
    forced = VolumeRef("db", {**volume_b.options, "preempt": "true"}, volume_b.record)
    device = second.provider().attach_device(forced)
    assert stat.S_ISBLK(os.stat(device).st_mode)
    assert [a["InstanceId"] for a in attachments(moto, volume.record["disk_id"])] == [
        second.instance_id
    ]
    # The preempted host, its attachment file still naming the disk, is now the one refused:
    # by the fence (issue 19), naming the holder and the generation it took the disk under.
    taken = f"taken over by instance {second.instance_id} \\(fence generation 2\\)"
    with pytest.raises(Conflict, match=taken) as refused:
        provider_a.attach_device(volume)
    assert f"attached to instance {second.instance_id}" in str(refused.value)  # where it is now
    second.provider().detach_device(forced)


def test_two_hosts_racing_exactly_one_wins(ec2_host: Host, moto: MotoServer) -> None:
    # moto would let the second AttachVolume move the attachment (AWS answers VolumeInUse):
    # Orlop must not depend on either, so the claim protocol decides before AttachVolume.
    hosts = [ec2_host(), ec2_host()]
    volume = make(hosts[0].provider(), "race", size="1G")
    refs = [volume, make(hosts[1].provider(), "race")]
    providers = [host.provider() for host in hosts]
    results = race(*(lambda i=i: providers[i].attach_device(refs[i]) for i in range(2)), timeout=30)
    winners = [i for i, r in enumerate(results) if isinstance(r, str)]
    losers = [i for i, r in enumerate(results) if isinstance(r, Conflict)]
    assert len(winners) == 1 and len(losers) == 1, results
    winner = hosts[winners[0]].instance_id
    assert winner in str(results[losers[0]])
    assert [a["InstanceId"] for a in attachments(moto, volume.record["disk_id"])] == [winner]
    providers[winners[0]].detach_device(refs[winners[0]])


def test_device_that_never_appears_fails_and_detaches(ec2_host: Host, moto: MotoServer) -> None:
    broken = ec2_host(present=False)
    provider = broken.provider(attach_timeout=1.5)
    volume = make(provider, "ghost", size="1G")
    with pytest.raises(BackendError, match=r"no block device appeared within 1.5s.*detached"):
        provider.attach_device(volume)
    assert attachments(moto, volume.record["disk_id"]) == []
    provider.remove(volume)


def test_zone_mismatch_refused_before_attach(ec2_host: Host, moto: MotoServer) -> None:
    host = ec2_host()
    provider = host.provider()
    volume = make(provider, "faraway", size="1G", availability_zone="us-east-1b")
    assert volume.record["zone"] == "us-east-1b"
    with pytest.raises(Conflict, match="is in us-east-1b and this instance"):
        provider.attach_device(volume)
    assert attachments(moto, volume.record["disk_id"]) == []
    provider.remove(volume)


def test_adopt_with_conflicting_options_refused(ec2_host: Host) -> None:
    first, second = ec2_host(), ec2_host()
    made = make(first.provider(), "sized", size="2G")
    with pytest.raises(Conflict, match=f"already exists as EBS volume {made.record['disk_id']}"):
        make(second.provider(), "sized", size="3G")
    first.provider().remove(made)


def test_remove_deletes_and_keep_on_remove_untags(ec2_host: Host, moto: MotoServer) -> None:
    host = ec2_host()
    provider = host.provider()
    gone = make(provider, "gone", size="1G")
    provider.attach_device(gone)
    provider.remove(gone)  # attached here: detached, then deleted
    assert (
        moto.client().describe_volumes(
            Filters=[{"Name": "volume-id", "Values": [gone.record["disk_id"]]}]
        )["Volumes"]
        == []
    )
    kept = make(provider, "kept", size="1G", keep_on_remove="true")
    provider.remove(kept)
    left = moto.client().describe_volumes(VolumeIds=[kept.record["disk_id"]])["Volumes"][0]
    assert not any(t["Key"].startswith("orlop:") for t in left.get("Tags", []))
    assert provider.find("kept") == []
    provider.remove(kept)  # already untagged: nothing left to do, not an error
    moto.client().delete_volume(VolumeId=kept.record["disk_id"])


def test_remove_refused_while_attached_elsewhere(ec2_host: Host) -> None:
    first, second = ec2_host(), ec2_host()
    volume = make(first.provider(), "held", size="1G")
    first.provider().attach_device(volume)
    with pytest.raises(Conflict, match=f"attached to instance {first.instance_id}"):
        second.provider().remove(volume)
    first.provider().detach_device(volume)
    second.provider().remove(volume)


def test_bad_input_creates_nothing(ec2_host: Host, moto: MotoServer, namespace: str) -> None:
    provider = ec2_host().provider()
    with pytest.raises(InvalidOption, match=r"unknown availability zone us-east-1q.*us-east-1a"):
        make(provider, "badzone", size="1G", availability_zone="us-east-1q")
    with pytest.raises(NotFound, match="snapshot snap-0123456789abcdef0 does not exist"):
        make(provider, "badsnap", from_snapshot="snap-0123456789abcdef0")
    with pytest.raises(NotFound, match="no snapshot named nightly"):
        make(provider, "badsnap", from_snapshot="nightly")
    with pytest.raises(InvalidOption, match="outside what type st1 allows: 125 to 16384"):
        make(provider, "small", type="st1", size="100G")
    assert namespace_volumes(moto.client(), namespace) == []


def test_snapshots_and_create_from_snapshot(ec2_host: Host, moto: MotoServer) -> None:
    # moto keeps no data in snapshots: this checks the API flow (tags, names, sizes, IDs),
    # not that the bytes come back, which is EBS's job.
    backend = ec2_host().backend()
    provider = backend.provider
    volume = make(provider, "src", size="2G")
    snapshot = backend.create_snapshot(volume, "nightly")
    assert snapshot["id"].startswith("snap-") and snapshot["volume"] == "src"
    with pytest.raises(Conflict, match="already exists"):
        backend.create_snapshot(volume, "nightly")
    other = make(provider, "other", size="1G")
    backend.create_snapshot(other, "other-snap")
    assert [s["name"] for s in backend.list_snapshots("src")] == ["nightly"]
    assert {s["name"] for s in backend.list_snapshots(None)} == {"nightly", "other-snap"}

    by_name = make(provider, "restored", from_snapshot="nightly")
    assert by_name.record["snapshot_id"] == snapshot["id"] and by_name.record["size"] == 2 * 1024**3
    by_id = make(provider, "restored2", from_snapshot=snapshot["id"], size="3G")
    assert by_id.record["size"] == 3 * 1024**3
    with pytest.raises(InvalidOption, match="smaller than snapshot"):
        make(provider, "too-small", from_snapshot=snapshot["id"], size="1G")

    assert backend.delete_snapshot("nightly")["id"] == snapshot["id"]
    with pytest.raises(NotFound):
        backend.delete_snapshot("nightly")
    backend.delete_snapshot("other-snap")
    assert backend.list_snapshots(None) == []
    for ref in (volume, other, by_name, by_id):
        provider.remove(ref)


def test_grow_shows_on_the_device(ec2_host: Host) -> None:
    provider = ec2_host().provider()
    volume = make(provider, "grow", size="1G")
    device = provider.attach_device(volume)
    record = provider.grow(volume, 2 * 1024**3)
    assert record["size"] == 2 * 1024**3
    with open(f"/sys/class/block/{os.path.basename(device)}/size") as size:
        assert int(size.read()) * 512 == 2 * 1024**3
    with pytest.raises(InvalidOption, match="cannot shrink"):
        provider.grow(VolumeRef("grow", volume.options, record), 1024**3)
    provider.detach_device(volume)
    provider.remove(volume)


def test_grow_of_provisioned_iops_volumes_uses_their_own_iops(ec2_host: Host) -> None:
    # io1/io2 need iops: a grow validates the new size with the volume's own IOPS (it used
    # to fail with "type io1 needs iops" whatever was asked).
    provider = ec2_host().provider()
    for kind in ("io1", "io2"):
        volume = make(provider, f"grow-{kind}", type=kind, size="4G", iops="200")
        record = provider.grow(volume, 8 * 1024**3)
        assert (record["size"], record["iops"], record["type"]) == (8 * 1024**3, 200, kind)
        provider.remove(VolumeRef(volume.name, volume.options, record))
    tight = make(provider, "grow-tight", type="io1", size="4G", iops="200")
    with pytest.raises(InvalidOption, match="size 20000 GiB is outside what type io1 allows"):
        provider.grow(tight, 20000 * 1024**3)
    provider.remove(tight)


def test_throttling_is_retried_with_backoff(ec2_host: Host, moto: MotoServer) -> None:
    proxy = Ec2Proxy(moto.url)  # answers RequestLimitExceeded as EC2 does (HTTP 503)
    try:
        provider = ec2_host(endpoint_url=proxy.url).provider()
        proxy.throttle.update({"DescribeVolumes": 2, "CreateVolume": 3, "AttachVolume": 2})
        volume = make(provider, "busy", size="1G")
        assert proxy.refused["CreateVolume"] == 3 and proxy.forwarded["CreateVolume"] == 1
        assert proxy.refused["DescribeVolumes"] == 2
        provider.attach_device(volume)
        assert proxy.refused["AttachVolume"] == 2 and proxy.forwarded["AttachVolume"] == 1
        provider.detach_device(volume)

        proxy.throttle["DeleteVolume"] = 1000
        with pytest.raises(
            CloudError,
            match=r"DeleteVolume failed \(RequestLimitExceeded\).*still throttled after 10",
        ):
            provider.remove(volume)
        assert proxy.refused["DeleteVolume"] == 10  # api_max_attempts, then a clear error
        proxy.throttle.clear()
        provider.remove(volume)
        assert proxy.forwarded["DeleteVolume"] == 1
    finally:
        proxy.stop()


def test_server_error_on_attach_is_a_failure_not_a_retry(ec2_host: Host, moto: MotoServer) -> None:
    # A 500 from AttachVolume is never repeated blindly (moto's 500s may still have moved the
    # attachment): Orlop reports it and makes sure it holds no attachment afterwards.
    proxy = Ec2Proxy(moto.url)
    try:
        provider = ec2_host(endpoint_url=proxy.url).provider()
        volume = make(provider, "flaky", size="1G")
        proxy.fail["AttachVolume"] = 1
        with pytest.raises(BackendError, match=r"attaching flaky .*InternalError"):
            provider.attach_device(volume)
        assert proxy.refused["AttachVolume"] == 1 and proxy.forwarded["AttachVolume"] == 0
        assert attachments(moto, volume.record["disk_id"]) == []
        provider.remove(volume)
    finally:
        proxy.stop()


def test_provisioned_iops_and_encryption_reach_ec2(ec2_host: Host, moto: MotoServer) -> None:
    provider = ec2_host().provider()
    io2 = make(provider, "fast", type="io2", size="4G", iops="2000")
    assert (io2.record["type"], io2.record["iops"], io2.record["size"]) == (
        "io2",
        2000,
        4 * 1024**3,
    )
    sealed = make(provider, "sealed", size="1G", encrypted="true")
    assert sealed.record["encrypted"] is True
    facts = provider.describe(sealed)
    assert facts["encrypted"] is True and facts["attachment"] is None
    found = moto.client().describe_volumes(VolumeIds=[io2.record["disk_id"]])["Volumes"][0]
    assert found["Iops"] == 2000 and found["VolumeType"] == "io2"
    for ref in (io2, sealed):
        provider.remove(ref)


def test_orlop_judges_attachment_state_not_api_answers(ec2_host: Host, moto: MotoServer) -> None:
    # moto answers some attach/detach calls with HTTP 500 although they took effect (AWS
    # answers VolumeInUse for a double attach and succeeds on a forced detach). The proxy
    # reproduces "took effect, answered 500"; Orlop must decide from DescribeVolumes alone.
    first = ec2_host()
    proxy = Ec2Proxy(moto.url)
    try:
        second = ec2_host(endpoint_url=proxy.url)
        volume = make(first.provider(), "judged", size="1G")
        volume_id = volume.record["disk_id"]
        first.provider().attach_device(volume)

        # Refused from state alone: AttachVolume is never sent for a volume held elsewhere.
        held = make(second.provider(), "judged")
        with pytest.raises(Conflict, match=f"attached to instance {first.instance_id}"):
            second.provider().attach_device(held)
        assert proxy.forwarded["AttachVolume"] == 0

        # A forced detach answered 500 that did happen: the state says so, preemption goes on.
        proxy.fail_after["DetachVolume"] = 1
        forced = VolumeRef("judged", {**held.options, "preempt": "true"}, held.record)
        assert stat.S_ISBLK(os.stat(second.provider().attach_device(forced)).st_mode)
        assert proxy.refused["DetachVolume"] == 0 and proxy.forwarded["DetachVolume"] == 1
        assert [a["InstanceId"] for a in attachments(moto, volume_id)] == [second.instance_id]
        second.provider().detach_device(forced)

        # An attach answered 500 that did happen: reported as a failure, and undone.
        proxy.fail_after["AttachVolume"] = 1
        with pytest.raises(BackendError, match="InternalError"):
            second.provider().attach_device(held)
        assert attachments(moto, volume_id) == []
        second.provider().remove(held)
    finally:
        proxy.stop()
