"""A cloud disk (EBS on the EC2 test server) moving between two CSI nodes, the way Swarm
moves it: the controller publishes to the new node before the old one let go; the old node
gets NodeUnpublish but never NodeUnstage. Two real daemons, real loop devices as disks.

Node A's daemon is also the controller."""

from __future__ import annotations

import os
import threading
import time
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
from tests.support.daemon import OrlopDaemon, wait_for_socket
from tests.support.names import unique

pytest_plugins = ["tests.support.network_fixtures", "tests.servers.ec2.fixtures"]

GiB = 1024**3
Pair = tuple[CsiClient, CsiClient, SimulatedHost, SimulatedHost]


@pytest.fixture
def started() -> list[OrlopDaemon]:
    """The daemons `pair` started: A, B."""
    return []


@pytest.fixture
def pair(
    ec2_host: Callable[..., SimulatedHost], started: list[OrlopDaemon]
) -> Iterator[Callable[..., Pair]]:
    """`pair(stage_wait, fs)`: two EBS nodes (daemons A and B, one instance each)."""
    clients: list[CsiClient] = []

    def make(stage_wait: float, fs: str = "ext4") -> Pair:
        driver = unique("csi-move")
        hosts = [ec2_host(style="xen"), ec2_host(style="nvme")]
        for host in hosts:
            daemon = start_csi_daemon(
                {driver: host.driver_config(fs=fs)},
                env={"ORLOP_CSI_STAGE_WAIT": str(stage_wait)},
            )
            started.append(daemon)
            clients.append(CsiClient(csi_socket(daemon, driver)))
        return clients[0], clients[1], hosts[0], hosts[1]

    try:
        yield make
    finally:
        for client in clients:
            client.close()
        for daemon in started:
            daemon.destroy()


def attached_to(moto: MotoServer, volume_id: str) -> list[str]:
    described = moto.client().describe_volumes(
        Filters=[{"Name": "tag:Name", "Values": [f"*{volume_id}*"]}]
    )["Volumes"]
    return [
        att["InstanceId"]
        for disk in described
        for att in disk["Attachments"]
        if att["State"] != "detached"
    ]


def create(controller: CsiClient) -> Any:
    return controller.call(
        "CreateVolume",
        name=unique("moving"),
        capacity_range=capacity(GiB),
        volume_capabilities=[capability()],
    ).volume


def publish(controller: CsiClient, volume: Any, node: str) -> dict[str, str]:
    answer = controller.call(
        "ControllerPublishVolume",
        volume_id=volume.volume_id,
        node_id=node,
        volume_capability=capability(),
        volume_context=dict(volume.volume_context),
    )
    return dict(answer.publish_context)


def stage(client: CsiClient, volume: Any, root: Path, context: dict[str, str]) -> None:
    client.call(
        "NodeStageVolume",
        volume_id=volume.volume_id,
        staging_target_path=str(root / "staging"),
        volume_capability=capability(),
        volume_context=dict(volume.volume_context),
        publish_context=context,
    )


def node_publish(client: CsiClient, volume: Any, root: Path, context: dict[str, str]) -> Path:
    client.call(
        "NodePublishVolume",
        volume_id=volume.volume_id,
        staging_target_path=str(root / "staging"),
        target_path=str(root / "target"),
        volume_capability=capability(),
        volume_context=dict(volume.volume_context),
        publish_context=context,
    )
    return root / "target"


def unpublish(client: CsiClient, volume: Any, root: Path) -> None:
    client.call("NodeUnpublishVolume", volume_id=volume.volume_id, target_path=str(root / "target"))


def on_a_with_rows(
    a: CsiClient, host_a: SimulatedHost, tmp_path: Path
) -> tuple[Any, dict[str, str]]:
    volume = create(a)
    context = publish(a, volume, host_a.instance_id)
    (tmp_path / "a" / "staging").mkdir(parents=True)
    stage(a, volume, tmp_path / "a", context)
    target = node_publish(a, volume, tmp_path / "a", context)
    (target / "rows").write_text("1\n2\n3\n")
    os.sync()
    return volume, context


def test_stage_waits_for_the_old_node_then_succeeds(
    pair: Callable[..., Pair], moto: MotoServer, tmp_path: Path
) -> None:
    a, b, host_a, host_b = pair(30.0)
    volume, _ = on_a_with_rows(a, host_a, tmp_path)
    # Swarm's order: the controller moves the claim first, the old node lets go later.
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_a.instance_id)
    context_b = publish(a, volume, host_b.instance_id)
    assert context_b == {"node": host_b.instance_id}
    (tmp_path / "b" / "staging").mkdir(parents=True)
    releasing = threading.Timer(1.0, unpublish, [a, volume, tmp_path / "a"])
    started = time.monotonic()
    releasing.start()
    try:
        stage(b, volume, tmp_path / "b", context_b)  # waits while A still holds the disk
    finally:
        releasing.join()
    assert time.monotonic() - started >= 1.0
    assert attached_to(moto, volume.volume_id) == [host_b.instance_id]
    on_b = node_publish(b, volume, tmp_path / "b", context_b)
    assert (on_b / "rows").read_text() == "1\n2\n3\n"
    unpublish(b, volume, tmp_path / "b")
    assert attached_to(moto, volume.volume_id) == []
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_b.instance_id)
    a.call("DeleteVolume", volume_id=volume.volume_id)


def test_stage_times_out_with_aborted_and_a_retry_succeeds(
    pair: Callable[..., Pair], moto: MotoServer, tmp_path: Path
) -> None:
    a, b, host_a, host_b = pair(1.0)
    volume, _ = on_a_with_rows(a, host_a, tmp_path)
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_a.instance_id)
    context_b = publish(a, volume, host_b.instance_id)
    (tmp_path / "b" / "staging").mkdir(parents=True)
    started = time.monotonic()
    code, text = b.code(
        "NodeStageVolume",
        volume_id=volume.volume_id,
        staging_target_path=str(tmp_path / "b" / "staging"),
        volume_capability=capability(),
        volume_context=dict(volume.volume_context),
        publish_context=context_b,
    )
    assert code == grpc.StatusCode.ABORTED, text
    assert host_a.instance_id in text and "csi.stage_wait" in text
    assert time.monotonic() - started >= 1.0
    assert attached_to(moto, volume.volume_id) == [host_a.instance_id]  # never two at once
    # Not published here: refused at once, as before.
    code, text = b.code(
        "NodeStageVolume",
        volume_id=volume.volume_id,
        staging_target_path=str(tmp_path / "b" / "staging"),
        volume_capability=capability(),
        volume_context=dict(volume.volume_context),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and host_a.instance_id in text
    unpublish(a, volume, tmp_path / "a")  # the old node lets go; the orchestrator retries
    stage(b, volume, tmp_path / "b", context_b)
    assert (node_publish(b, volume, tmp_path / "b", context_b) / "rows").read_text() == "1\n2\n3\n"
    unpublish(b, volume, tmp_path / "b")
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_b.instance_id)
    a.call("DeleteVolume", volume_id=volume.volume_id)


def test_the_last_unpublish_releases_the_disk(
    pair: Callable[..., Pair], started: list[OrlopDaemon], moto: MotoServer, tmp_path: Path
) -> None:
    a, _, host_a, _ = pair(5.0)
    volume, context = on_a_with_rows(a, host_a, tmp_path)
    assert attached_to(moto, volume.volume_id) == [host_a.instance_id]
    unpublish(a, volume, tmp_path / "a")  # Swarm: no NodeUnstage follows
    assert attached_to(moto, volume.volume_id) == []
    assert not os.path.ismount(tmp_path / "a" / "staging")
    # Swarm still thinks it staged there: a NodePublish stages it again, data intact.
    again = node_publish(a, volume, tmp_path / "a", context)
    assert (again / "rows").read_text() == "1\n2\n3\n"
    assert attached_to(moto, volume.volume_id) == [host_a.instance_id]
    unpublish(a, volume, tmp_path / "a")
    assert attached_to(moto, volume.volume_id) == []
    # Released, then A's Orlop restarts: the publish_context still says it is published
    # here, so a NodePublish stages it again as well.
    daemon_a = started[0]
    daemon_a.stop()
    a.close()
    daemon_a.start()
    a = CsiClient(a.path)
    wait_for_socket(a.path, process=daemon_a.process)
    again = node_publish(a, volume, tmp_path / "a", context)
    assert (again / "rows").read_text() == "1\n2\n3\n"
    unpublish(a, volume, tmp_path / "a")
    for _ in range(2):  # a later NodeUnstage (Kubernetes sends one) is idempotent
        a.call(
            "NodeUnstageVolume",
            volume_id=volume.volume_id,
            staging_target_path=str(tmp_path / "a" / "staging"),
        )
    assert attached_to(moto, volume.volume_id) == []
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_a.instance_id)
    a.call("DeleteVolume", volume_id=volume.volume_id)
    a.close()


def test_expansion_grows_the_filesystem_on_the_staging_node(
    pair: Callable[..., Pair], tmp_path: Path
) -> None:
    # xfs: growing a mounted ext4 needs CAP_SYS_RESOURCE, which a test sandbox may lack.
    a, b, _, host_b = pair(5.0, fs="xfs")
    volume = create(a)
    context = publish(a, volume, host_b.instance_id)
    (tmp_path / "b" / "staging").mkdir(parents=True)
    stage(b, volume, tmp_path / "b", context)
    target = node_publish(b, volume, tmp_path / "b", context)
    before = os.statvfs(target)
    grown = a.call(
        "ControllerExpandVolume", volume_id=volume.volume_id, capacity_range=capacity(2 * GiB)
    )
    assert grown.capacity_bytes == 2 * GiB
    assert grown.node_expansion_required  # the controller does not hold it: B grows it
    assert os.statvfs(target).f_blocks == before.f_blocks
    code, _ = a.code(  # not staged on A
        "NodeExpandVolume",
        volume_id=volume.volume_id,
        volume_path=str(target),
        capacity_range=capacity(2 * GiB),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    answer = b.call(
        "NodeExpandVolume",
        volume_id=volume.volume_id,
        volume_path=str(target),
        capacity_range=capacity(2 * GiB),
    )
    assert answer.capacity_bytes == 2 * GiB
    after = os.statvfs(target)
    assert after.f_blocks * after.f_frsize > 1.8 * GiB > before.f_blocks * before.f_frsize
    (target / "big").write_bytes(b"x" * (1024 * 1024))  # still writable, online
    unpublish(b, volume, tmp_path / "b")
    a.call("ControllerUnpublishVolume", volume_id=volume.volume_id, node_id=host_b.instance_id)
    a.call("DeleteVolume", volume_id=volume.volume_id)
