"""CSI across two nodes: two real daemons, the storage system the only thing they share.

The controller is node A's daemon; node B learns of a volume from the VolumeContext alone.
A share (sshfs) is multi-node multi-writer; a cloud disk (EBS on the EC2 test server) is
published to one node at a time, and follows the workload when it moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.csi.client import (
    CsiClient,
    capability,
    capacity,
    csi_socket,
    start_csi_daemon,
)
from tests.servers.ec2.server import MotoServer, SimulatedHost
from tests.servers.sshd.server import Sshd
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytest_plugins = ["tests.support.network_fixtures", "tests.servers.ec2.fixtures"]

GiB = 1024**3
Nodes = Callable[[list[dict[str, Any]]], list[CsiClient]]


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    """`nodes([config_a, config_b])`: one daemon per driver config, the same driver name."""
    started: list[OrlopDaemon] = []
    clients: list[CsiClient] = []

    def start(configs: list[dict[str, Any]]) -> list[CsiClient]:
        driver = unique("csi-nodes")
        for index, config in enumerate(configs):
            node_id = "" if config["backend"] == "ebs" else f"node-{index}"
            daemon = start_csi_daemon({driver: config}, node_id)
            started.append(daemon)
            clients.append(CsiClient(csi_socket(daemon, driver)))
        return list(clients)

    try:
        yield start
    finally:
        for client in clients:
            client.close()
        for daemon in started:
            daemon.destroy()


def stage_and_publish(
    client: CsiClient, volume: Any, root: Path, mode: str = "SINGLE_NODE_WRITER"
) -> Path:
    staging, target = root / "staging", root / "target"
    staging.mkdir(parents=True)
    client.call(
        "NodeStageVolume",
        volume_id=volume.volume_id,
        staging_target_path=str(staging),
        volume_capability=capability(mode),
        volume_context=dict(volume.volume_context),
    )
    client.call(
        "NodePublishVolume",
        volume_id=volume.volume_id,
        staging_target_path=str(staging),
        target_path=str(target),
        volume_capability=capability(mode),
    )
    return target


def unpublish_and_unstage(client: CsiClient, volume_id: str, root: Path) -> None:
    client.call("NodeUnpublishVolume", volume_id=volume_id, target_path=str(root / "target"))
    client.call("NodeUnstageVolume", volume_id=volume_id, staging_target_path=str(root / "staging"))


def test_a_share_is_written_by_two_nodes_at_once(sshd: Sshd, nodes: Nodes, tmp_path: Path) -> None:
    base = sshd.data / unique("csi-share")
    base.mkdir()
    config = {"backend": "sshfs", "options": sshd.options(path=str(base))}
    a, b = nodes([config, config])
    mode = "MULTI_NODE_MULTI_WRITER"
    volume = a.call(
        "CreateVolume", name=unique("shared"), volume_capabilities=[capability(mode)]
    ).volume
    on_a = stage_and_publish(a, volume, tmp_path / "a", mode)
    on_b = stage_and_publish(b, volume, tmp_path / "b", mode)  # B adopts it from the context
    (on_a / "row-a").write_text("from node A")
    (on_b / "row-b").write_text("from node B")
    assert (on_b / "row-a").read_text() == "from node A"
    assert (on_a / "row-b").read_text() == "from node B"
    unpublish_and_unstage(a, volume.volume_id, tmp_path / "a")
    unpublish_and_unstage(b, volume.volume_id, tmp_path / "b")
    a.call("DeleteVolume", volume_id=volume.volume_id)


def test_a_cloud_disk_is_published_to_one_node_and_follows_the_workload(
    ec2_host: Callable[..., SimulatedHost], moto: MotoServer, nodes: Nodes, tmp_path: Path
) -> None:
    host_a, host_b = ec2_host(style="xen"), ec2_host(style="nvme")
    a, b = nodes([host_a.driver_config(fs="ext4"), host_b.driver_config(fs="ext4")])
    assert a.call("NodeGetInfo").node_id == host_a.instance_id  # the provider's identity
    assert b.call("NodeGetInfo").node_id == host_b.instance_id
    volume = a.call(
        "CreateVolume",
        name=unique("disk"),
        capacity_range=capacity(GiB),
        volume_capabilities=[capability()],
    ).volume
    assert volume.capacity_bytes == GiB
    zone = {"topology.orlop.dev/zone": "us-east-1a"}
    assert [dict(t.segments) for t in volume.accessible_topology] == [zone]
    assert dict(b.call("NodeGetInfo").accessible_topology.segments) == zone
    for mode in ("MULTI_NODE_MULTI_WRITER", "MULTI_NODE_READER_ONLY"):
        code, text = a.code(
            "CreateVolume",
            name=unique("multi"),
            capacity_range=capacity(GiB),
            volume_capabilities=[capability(mode)],
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "SINGLE_NODE_WRITER" in text

    def publish(node_id: str) -> None:
        a.call(
            "ControllerPublishVolume",
            volume_id=volume.volume_id,
            node_id=node_id,
            volume_capability=capability(),
            volume_context=dict(volume.volume_context),
        )

    publish(host_a.instance_id)
    publish(host_a.instance_id)  # idempotent
    code, text = a.code(
        "ControllerPublishVolume",
        volume_id=volume.volume_id,
        node_id=host_b.instance_id,
        volume_capability=capability(),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and host_a.instance_id in text
    on_a = stage_and_publish(a, volume, tmp_path / "a")
    (on_a / "rows").write_text("1\n2\n3\n")
    code, _ = a.code("DeleteVolume", volume_id=volume.volume_id)
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # published: not deleted

    # The workload moves to B: unpublished on A, published to B, staged there.
    unpublish_and_unstage(a, volume.volume_id, tmp_path / "a")
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_a.instance_id)
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_a.instance_id)
    publish(host_b.instance_id)
    on_b = stage_and_publish(b, volume, tmp_path / "b")
    assert (on_b / "rows").read_text() == "1\n2\n3\n"
    described = moto.client().describe_volumes(
        Filters=[{"Name": "tag:Name", "Values": [f"*{volume.volume_id}*"]}]
    )["Volumes"]
    attached = [
        att["InstanceId"]
        for disk in described
        for att in disk["Attachments"]
        if att["State"] != "detached"
    ]
    assert attached in ([host_b.instance_id], [])  # never two nodes at once
    unpublish_and_unstage(b, volume.volume_id, tmp_path / "b")
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_b.instance_id)
    a.call("DeleteVolume", volume_id=volume.volume_id)
