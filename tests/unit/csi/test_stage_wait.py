"""A cloud disk moving between CSI nodes, over the in-memory cloud (no root, no server).

The CSI Node of host i-b runs against a small stand-in for the core's mount bookkeeping
(`OneHostService`: the first holder attaches the disk through the cloud layer's real
`Attacher`, the last detaches it), so what is decided here is the Node's: a disk another
node still holds, published here by the controller, is waited for and then ABORTED; the
last NodeUnpublish of a disk releases it. Raw block volumes keep binds out of it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from orlop.backends.base import VolumeRef
from orlop.core.model import Conflict, HeldElsewhere, NotFound, Volume
from orlop.frontends.csi.errors import CsiError, InFlight, status_code
from orlop.frontends.csi.messages import enum_value, message
from orlop.frontends.csi.node import PUBLISH_HOLDER, STAGE_HOLDER, Node
from orlop.frontends.csi.shape import DriverShape
from tests.support.cloud.memory import MemoryCloud
from tests.unit.cloud.test_layer_decisions import Host, make_host, volume_on

RAW = {"volume_mode": "block"}


class OneHostService:
    """The part of VolumeService a CSI Node calls, for one cloud volume on one host: mount
    IDs as holders, the disk attached on the first and detached after the last."""

    def __init__(self, host: Host, volume: VolumeRef) -> None:
        self.host = host
        self.ref = volume
        self.volume = Volume("drv", volume.name, "memory", dict(volume.options), volume.record, "")
        self.attaches = 0

    def get(self, driver: str, name: str) -> Volume:
        if name != self.volume.name:
            raise NotFound(f"volume {name} not found")
        return self.volume

    def list(self, driver: str) -> list[Volume]:
        return [self.volume]

    async def mount(self, driver: str, name: str, holder: str) -> str:
        if holder not in self.volume.mount_ids:
            if not self.volume.mount_ids:
                self.attaches += 1
                self.volume.mountpoint = await asyncio.to_thread(
                    self.host.attacher.attach, self.ref
                )
            self.volume.mount_ids.add(holder)
        return self.volume.mountpoint

    async def hold(self, driver: str, name: str, holder: str) -> None:
        self.volume.mount_ids.add(holder)

    async def unmount(self, driver: str, name: str, holder: str) -> None:
        if holder in self.volume.mount_ids:
            self.volume.mount_ids.discard(holder)
            if not self.volume.mount_ids:
                await asyncio.to_thread(self.host.attacher.detach, self.ref)


def shape() -> DriverShape:
    return DriverShape(
        driver="drv", kind="memory", local=False, exclusive=True, snapshots=False,
        clones=False, resize=True, has_size=True, has_fs=True, raw_block=True,
    )  # fmt: skip


def raw_capability() -> Any:
    return message("VolumeCapability")(
        block=message("VolumeCapability.BlockVolume")(),
        access_mode=message("VolumeCapability.AccessMode")(
            mode=enum_value("VolumeCapability.AccessMode", "Mode", "SINGLE_NODE_WRITER")
        ),
    )


def stage_request(name: str, staging: Path, published_to: str | None) -> Any:
    return message("NodeStageVolumeRequest")(
        volume_id=name,
        staging_target_path=str(staging),
        volume_capability=raw_capability(),
        publish_context={"node": published_to} if published_to else {},
    )


def moving_disk(tmp_path: Path, stage_wait: float) -> tuple[MemoryCloud, Host, VolumeRef, Node]:
    """A raw volume's disk attached to i-a; the CSI Node of i-b, with its service."""
    cloud = MemoryCloud(settle_reads=1)
    a, b = make_host(cloud, "i-a", tmp_path), make_host(cloud, "i-b", tmp_path)
    on_a = volume_on(a, **RAW)
    a.attacher.attach(on_a)
    on_b = VolumeRef("vol", dict(RAW), volume_on(b, **RAW).record)
    node = Node(OneHostService(b, on_b), shape(), "i-b", InFlight(), stage_wait)  # type: ignore[arg-type]
    return cloud, a, on_a, node


def test_stage_waits_for_the_old_node_to_let_go_then_attaches(tmp_path: Path) -> None:
    cloud, a, on_a, node = moving_disk(tmp_path, stage_wait=5.0)
    disk = on_a.record["disk_id"]
    releasing = threading.Timer(0.4, a.attacher.detach, [on_a])  # the old node's unpublish
    started = time.monotonic()
    releasing.start()
    try:
        asyncio.run(node.stage(stage_request("vol", tmp_path / "staging", "i-b")))
    finally:
        releasing.cancel()
    waited = time.monotonic() - started
    assert 0.4 <= waited < 5.0
    assert cloud.holders(disk) == ["i-b"]
    assert STAGE_HOLDER + str(tmp_path / "staging") in node.service.get("drv", "vol").mount_ids


def test_stage_answers_aborted_when_the_old_node_keeps_the_disk(tmp_path: Path) -> None:
    cloud, _, on_a, node = moving_disk(tmp_path, stage_wait=0.5)
    started = time.monotonic()
    with pytest.raises(CsiError) as aborted:
        asyncio.run(node.stage(stage_request("vol", tmp_path / "staging", "i-b")))
    waited = time.monotonic() - started
    assert aborted.value.code == grpc.StatusCode.ABORTED  # retryable, never FAILED_PRECONDITION
    assert "i-a" in str(aborted.value) and "0.5s" in str(aborted.value)
    assert 0.5 <= waited < 3.0
    assert cloud.holders(on_a.record["disk_id"]) == ["i-a"]  # nothing taken
    assert node.service.get("drv", "vol").mount_ids == set()  # nothing half-staged


@pytest.mark.parametrize("published_to", [None, "i-c"])
def test_a_disk_nobody_published_here_is_refused_at_once(
    tmp_path: Path, published_to: str | None
) -> None:
    _, _, _, node = moving_disk(tmp_path, stage_wait=5.0)
    started = time.monotonic()
    with pytest.raises(HeldElsewhere) as refused:
        asyncio.run(node.stage(stage_request("vol", tmp_path / "staging", published_to)))
    assert time.monotonic() - started < 1.0
    assert refused.value.holder == "i-a"
    assert isinstance(refused.value, Conflict)
    assert status_code(refused.value) == grpc.StatusCode.FAILED_PRECONDITION


def test_the_last_unpublish_releases_the_disk_and_a_later_unstage_is_idempotent(
    tmp_path: Path,
) -> None:
    cloud, a, on_a, node = moving_disk(tmp_path, stage_wait=5.0)
    a.attacher.detach(on_a)
    disk = on_a.record["disk_id"]
    staging, target = tmp_path / "staging", tmp_path / "target"
    asyncio.run(node.stage(stage_request("vol", staging, "i-b")))
    service = node.service
    asyncio.run(service.hold("drv", "vol", PUBLISH_HOLDER + str(target)))  # what publish keeps
    assert cloud.holders(disk) == ["i-b"]
    unpublish = message("NodeUnpublishVolumeRequest")(volume_id="vol", target_path=str(target))
    asyncio.run(node.unpublish(unpublish))
    assert cloud.holders(disk) == []  # released: the next node can attach it
    assert service.get("drv", "vol").mount_ids == set()
    assert node.released == {("vol", str(staging))}
    unstage = message("NodeUnstageVolumeRequest")(volume_id="vol", staging_target_path=str(staging))
    asyncio.run(node.unstage(unstage))  # Swarm's NodeUnstage, if it comes: nothing to do
    assert cloud.holders(disk) == [] and node.released == set()


def test_unpublish_keeps_the_disk_while_another_target_uses_it(tmp_path: Path) -> None:
    cloud, a, on_a, node = moving_disk(tmp_path, stage_wait=5.0)
    a.attacher.detach(on_a)
    asyncio.run(node.stage(stage_request("vol", tmp_path / "staging", "i-b")))
    service = node.service
    for target in ("t1", "t2"):
        asyncio.run(service.hold("drv", "vol", PUBLISH_HOLDER + str(tmp_path / target)))
    unpublish = message("NodeUnpublishVolumeRequest")(
        volume_id="vol", target_path=str(tmp_path / "t1")
    )
    asyncio.run(node.unpublish(unpublish))
    assert cloud.holders(on_a.record["disk_id"]) == ["i-b"]  # t2 still uses it
    assert node.released == set()
