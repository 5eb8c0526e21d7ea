"""Raw block volumes through CSI (the `block` access type), on a real loop device.

One `orlop serve` with a loopfile driver (block kind) and a directory driver (not one). A raw
volume's device is never formatted: it reads back as zeros until its user writes, and what
its user wrote is there after unpublish, unstage and a new stage. A raw volume is never
mounted as a filesystem, and a filesystem volume is never handed out raw."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from orlop.host.mounts import is_mountpoint
from tests.integration.csi.client import (
    CsiClient,
    block_capability,
    capability,
    capacity,
    csi_socket,
    start_csi_daemon,
)
from tests.servers.ec2.server import SimulatedHost
from tests.support.block import cleanup, leftovers
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytest_plugins = ["tests.servers.ec2.fixtures"]

MiB = 1024 * 1024
GiB = 1024 * MiB
NODE = "csi-block-node"


@pytest.fixture(scope="module")
def daemon() -> Iterator[OrlopDaemon]:
    drivers = {
        f"{unique('csi')}-loopfile": {"backend": "loopfile", "options": {"fs": "ext4"}},
        f"{unique('csi')}-directory": {"backend": "directory"},
    }
    started = start_csi_daemon(drivers, NODE)
    try:
        yield started
    finally:
        started.stop()
        for driver in drivers:
            cleanup(str(started.state_dir / "drivers" / driver))
        started.destroy()


def client_for(daemon: OrlopDaemon, kind: str) -> Iterator[CsiClient]:
    driver = next(d for d in daemon.drivers if d.endswith(f"-{kind}"))
    client = CsiClient(csi_socket(daemon, driver))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def block(daemon: OrlopDaemon) -> Iterator[CsiClient]:
    yield from client_for(daemon, "loopfile")


@pytest.fixture
def directory(daemon: OrlopDaemon) -> Iterator[CsiClient]:
    yield from client_for(daemon, "directory")


def create(client: CsiClient, name: str, cap: Any, size: int = 64 * MiB) -> Any:
    return client.call(
        "CreateVolume", name=name, capacity_range=capacity(size), volume_capabilities=[cap]
    ).volume


def node_calls(client: CsiClient, name: str, staging: Path) -> dict[str, Any]:
    staging.mkdir(exist_ok=True)
    return {
        "volume_id": name,
        "staging_target_path": str(staging),
        "volume_capability": block_capability(),
    }


def read_at(path: Path, length: int) -> bytes:
    with open(path, "rb", buffering=0) as device:
        return device.read(length)


def test_a_raw_volume_is_a_device_never_formatted(
    block: CsiClient, daemon: OrlopDaemon, tmp_path: Path
) -> None:
    name = unique("raw")
    made = create(block, name, block_capability())
    assert made.capacity_bytes == 64 * MiB and made.volume_context["volume_mode"] == "block"
    assert create(block, name, block_capability()).volume_id == name  # idempotent
    code, text = block.code(
        "CreateVolume",
        name=name,
        capacity_range=capacity(64 * MiB),
        volume_capabilities=[capability()],
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS and "raw block volume" in text
    checked = block.call(
        "ValidateVolumeCapabilities", volume_id=name, volume_capabilities=[capability()]
    )
    assert not checked.HasField("confirmed") and "no filesystem to mount" in checked.message
    confirmed = block.call(
        "ValidateVolumeCapabilities", volume_id=name, volume_capabilities=[block_capability()]
    )
    assert confirmed.HasField("confirmed")

    staging = tmp_path / "staging"
    stage = node_calls(block, name, staging)
    code, text = block.code("NodeStageVolume", **{**stage, "volume_capability": capability()})
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no filesystem to mount" in text
    block.call("NodeStageVolume", **stage)
    block.call("NodeStageVolume", **stage)  # idempotent
    assert not is_mountpoint(str(staging))  # nothing is mounted for a raw volume
    target, second = tmp_path / "pod" / "dev" / "disk", tmp_path / "other" / "disk"
    publish = {**stage, "target_path": str(target)}
    code, text = block.code("NodePublishVolume", **publish, readonly=True)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "read-only" in text
    block.call("NodePublishVolume", **publish)  # the target file and its parents are made
    block.call("NodePublishVolume", **publish)  # idempotent
    assert stat.S_ISBLK(os.stat(target).st_mode) and is_mountpoint(str(target))
    assert read_at(target, MiB) == bytes(MiB)  # never formatted: it reads back blank
    pattern = os.urandom(MiB)
    with open(target, "r+b", buffering=0) as device:
        device.write(pattern)
        os.fsync(device.fileno())
    block.call("NodePublishVolume", **{**publish, "target_path": str(second)})
    assert read_at(second, MiB) == pattern  # two targets, one device
    usage = block.call("NodeGetVolumeStats", volume_id=name, volume_path=str(target)).usage
    assert [(u.unit, u.total) for u in usage] == [(1, 64 * MiB)]  # BYTES, the size only

    # Online expansion: the device grows where it is published.
    grown = block.call("ControllerExpandVolume", volume_id=name, capacity_range=capacity(96 * MiB))
    assert grown.capacity_bytes == 96 * MiB and not grown.node_expansion_required
    usage = block.call("NodeGetVolumeStats", volume_id=name, volume_path=str(target)).usage
    assert usage[0].total == 96 * MiB

    for path in (target, second):
        block.call("NodeUnpublishVolume", volume_id=name, target_path=str(path))
        block.call("NodeUnpublishVolume", volume_id=name, target_path=str(path))
        assert not path.exists()  # the file made for the bind is gone
    block.call("NodeUnstageVolume", volume_id=name, staging_target_path=str(staging))
    root = str(daemon.state_dir / "drivers" / next(iter(daemon.drivers)))
    assert leftovers(root) == {"mounts": [], "loop_devices": []}

    # Staged again: what its user wrote is there, and still nothing formatted it.
    block.call("NodeStageVolume", **stage)
    block.call("NodePublishVolume", **publish)
    assert read_at(target, MiB) == pattern
    block.call("NodeUnpublishVolume", volume_id=name, target_path=str(target))
    block.call("NodeUnstageVolume", volume_id=name, staging_target_path=str(staging))
    block.call("DeleteVolume", volume_id=name)
    assert leftovers(root) == {"mounts": [], "loop_devices": []}
    assert name not in {e.volume.volume_id for e in block.call("ListVolumes").entries}


def test_a_filesystem_volume_is_never_handed_out_raw(block: CsiClient, tmp_path: Path) -> None:
    name = unique("fs")
    create(block, name, capability())
    code, text = block.code(
        "CreateVolume",
        name=name,
        capacity_range=capacity(64 * MiB),
        volume_capabilities=[block_capability()],
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS and "volume_mode" in text
    stage = node_calls(block, name, tmp_path / "staging")
    code, text = block.code("NodeStageVolume", **stage)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "holds a filesystem" in text
    assert not is_mountpoint(str(tmp_path / "staging"))  # refused: nothing attached
    block.call("DeleteVolume", volume_id=name)


def test_raw_block_is_refused_where_the_kind_has_no_device(
    directory: CsiClient, tmp_path: Path
) -> None:
    code, text = directory.code(
        "CreateVolume", name=unique("raw"), volume_capabilities=[block_capability()]
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "loopfile, ebs, gce, digitalocean, cinder, powerflex, vsphere" in text


def test_a_raw_cloud_disk_is_attached_to_the_node_and_never_formatted(
    ec2_host: Callable[..., SimulatedHost], tmp_path: Path
) -> None:
    host = ec2_host(style="nvme")
    driver = unique("csi-raw-ebs")
    daemon = start_csi_daemon({driver: host.driver_config(fs="ext4")})
    client = CsiClient(csi_socket(daemon, driver))
    try:
        name = unique("rawdisk")
        volume = create(client, name, block_capability(), size=GiB)
        node = client.call("NodeGetInfo").node_id
        assert node == host.instance_id
        published = {"volume_id": name, "node_id": node, "volume_capability": capability()}
        code, text = client.code("ControllerPublishVolume", **published)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no filesystem" in text
        client.call(
            "ControllerPublishVolume", **{**published, "volume_capability": block_capability()}
        )
        stage = {
            **node_calls(client, name, tmp_path / "staging"),
            "volume_context": dict(volume.volume_context),
        }
        client.call("NodeStageVolume", **stage)
        target = tmp_path / "pod" / "disk"
        client.call("NodePublishVolume", **stage, target_path=str(target))
        assert stat.S_ISBLK(os.stat(target).st_mode)
        assert read_at(target, MiB) == bytes(MiB)  # the disk was never formatted
        pattern = os.urandom(MiB)
        with open(target, "r+b", buffering=0) as device:
            device.write(pattern)
            os.fsync(device.fileno())
        usage = client.call("NodeGetVolumeStats", volume_id=name, volume_path=str(target)).usage
        assert [u.total for u in usage] == [GiB]
        client.call("NodeUnpublishVolume", volume_id=name, target_path=str(target))
        client.call(
            "NodeUnstageVolume", volume_id=name, staging_target_path=str(tmp_path / "staging")
        )
        client.call("ControllerUnpublishVolume", volume_id=name, node_id=node)
        client.call("DeleteVolume", volume_id=name)
        assert client.call("ListVolumes").entries == []
    finally:
        client.close()
        daemon.destroy()
