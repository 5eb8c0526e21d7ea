"""EBS under API faults: the fault proxy (tests/support/faults.py) in front of EC2.

moto behind the refusing EC2 proxy, and the fault proxy in front of both, as the endpoint
the driver talks to (boto3, unpatched). Reads are retried through throttling, server errors,
dropped connections and slow answers; a create or attach whose answer is lost (the call
happened) never makes a second disk or a second attachment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.layer import CloudDisks
from orlop.core.model import BackendError
from tests.servers.ec2.server import Ec2Proxy, MotoServer, SimulatedHost, namespace_volumes
from tests.support.faults import Fault, FaultProxy, ec2_action

pytest_plugins = ["tests.servers.ec2.fixtures"]

Host = Callable[..., SimulatedHost]
TRANSIENT = (Fault.THROTTLE, Fault.ERROR_500, Fault.ERROR_503, Fault.SLOW)


@pytest.fixture
def faults(ec2_api: Ec2Proxy) -> Iterator[FaultProxy]:
    proxy = FaultProxy(ec2_api.url, "ebs")
    try:
        yield proxy
    finally:
        proxy.stop()


def make(provider: CloudDisks, name: str, **options: str) -> VolumeRef:
    canonical = provider.options.validate(options)
    provider.validate(name, canonical)
    ref = VolumeRef(name, canonical)
    ref.record = provider.create(ref)
    return ref


def holders(moto: MotoServer, volume_id: str) -> list[str]:
    volume = moto.client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return [a["InstanceId"] for a in volume["Attachments"] if a["State"] != "detached"]


def disks(moto: MotoServer, host: SimulatedHost) -> list[dict[str, Any]]:
    return namespace_volumes(moto.client(), host.settings["namespace"])


def test_reads_are_retried_through_every_transient_fault(
    ec2_host: Host, moto: MotoServer, faults: FaultProxy
) -> None:
    host = ec2_host(endpoint_url=faults.url)
    provider = host.provider()
    volume = make(provider, "steady", size="1G")
    reads = ec2_action("DescribeVolumes")
    for fault in TRANSIENT:
        faults.inject(fault, reads, delay=0.5)
    provider.attach_device(volume)
    assert holders(moto, volume.record["disk_id"]) == [host.instance_id]
    provider.detach_device(volume)
    assert holders(moto, volume.record["disk_id"]) == []
    for fault in TRANSIENT:
        assert faults.met(fault, "DescribeVolumes") == 1, (fault, faults.injected)
    provider.remove(volume)
    assert disks(moto, host) == []


def test_a_read_whose_connection_dropped_is_retried(
    ec2_host: Host, moto: MotoServer, faults: FaultProxy
) -> None:
    host = ec2_host(endpoint_url=faults.url)
    provider = host.provider()
    volume = make(provider, "dropped", size="1G")
    try:
        faults.inject(Fault.DROP, ec2_action("DescribeVolumes"))
        provider.attach_device(volume)
        assert holders(moto, volume.record["disk_id"]) == [host.instance_id]
        assert faults.met(Fault.DROP) == 1
    finally:
        faults.calm()
        provider.detach_device(volume)
        provider.remove(volume)


def test_throttled_writes_are_repeated_and_server_errors_are_not(
    ec2_host: Host, moto: MotoServer, faults: FaultProxy
) -> None:
    host = ec2_host(endpoint_url=faults.url)
    provider = host.provider()
    faults.inject(Fault.THROTTLE, ec2_action("CreateVolume"), times=2)
    volume = make(provider, "writes", size="1G")
    assert faults.met(Fault.THROTTLE, "CreateVolume") == 2 and len(disks(moto, host)) == 1
    faults.inject(Fault.ERROR_503, ec2_action("AttachVolume"))
    with pytest.raises(BackendError, match=r"attaching writes .*Unavailable"):
        provider.attach_device(volume)  # a 503 from a write is examined, not repeated
    assert holders(moto, volume.record["disk_id"]) == []
    provider.attach_device(volume)  # Docker's next Mount
    assert holders(moto, volume.record["disk_id"]) == [host.instance_id]
    provider.detach_device(volume)
    provider.remove(volume)


def test_a_lost_answer_to_create_makes_no_second_disk(
    ec2_host: Host, moto: MotoServer, faults: FaultProxy
) -> None:
    host = ec2_host(endpoint_url=faults.url)
    provider = host.provider()
    faults.inject(Fault.LOSE_ANSWER, ec2_action("CreateVolume"))
    ref = VolumeRef("lost-create", provider.options.validate({"size": "1G"}))
    with pytest.raises(BackendError, match="CreateVolume"):
        provider.create(ref)
    [made] = disks(moto, host)  # the call happened
    ref.record = provider.create(ref)  # the retry (Docker's, or the user's) finds it
    assert ref.record["disk_id"] == made["VolumeId"]
    assert [d["VolumeId"] for d in disks(moto, host)] == [made["VolumeId"]]
    provider.remove(ref)
    assert disks(moto, host) == []


def test_a_lost_answer_to_attach_leaves_one_attachment_at_most(
    ec2_host: Host, moto: MotoServer, faults: FaultProxy
) -> None:
    first = ec2_host(endpoint_url=faults.url)
    second = ec2_host(endpoint_url=faults.url)
    provider = first.provider()
    volume = make(provider, "lost-attach", size="1G")
    volume_id = volume.record["disk_id"]
    faults.inject(Fault.LOSE_ANSWER, ec2_action("AttachVolume"))
    with pytest.raises(BackendError, match="attaching lost-attach"):
        provider.attach_device(volume)
    # It did attach; Orlop, not knowing, detached it again rather than leave it behind.
    assert faults.forwarded["AttachVolume"] == 1
    assert holders(moto, volume_id) == []
    device = provider.attach_device(volume)
    assert device.startswith("/dev/loop") and holders(moto, volume_id) == [first.instance_id]

    # A lost answer to a preempting host's force detach: the state decides, one holder.
    other = second.provider()
    taken = make(other, "lost-attach", preempt="true")
    faults.inject(Fault.LOSE_ANSWER, ec2_action("DetachVolume"))
    other.attach_device(taken)
    assert holders(moto, volume_id) == [second.instance_id]
    assert faults.met(Fault.LOSE_ANSWER, "DetachVolume") == 1
    faults.inject(Fault.LOSE_ANSWER, ec2_action("DetachVolume"))
    with pytest.raises(BackendError, match="DetachVolume"):
        other.detach_device(taken)  # heard nothing: says so
    other.detach_device(taken)  # the retry finds it detached
    assert holders(moto, volume_id) == []
    other.remove(taken)
    assert disks(moto, first) == []
