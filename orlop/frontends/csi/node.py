"""CSI Node for one driver: stage = the core's mount (once per node) bound at the staging
path; publish = a bind mount of the staging path into each target.

The stage is a holder of the volume's mount in the core (`csi-stage:<staging path>`), beside
Docker's mount IDs: the backend attaches on the first holder and detaches after the last, and
a `docker volume rm` is refused while a CSI workload holds the volume. A node that does not
know a global volume yet (the controller made it on another host) adopts it from the
VolumeContext, which carries its options: a node never calls the controller.

A raw block volume (the block access type): stage attaches its device (never formatted or
mounted) and binds nothing at the staging path; publish binds the device onto the target
*file*; stats report its size. `failpoint("csi.<call>.<step>")` marks the steps between
the core's bookkeeping and a bind (kill -9 tests): csi.node_stage.after_attach,
csi.node_publish.after_hold, csi.node_unpublish.after_unbind, csi.node_unstage.after_unbind.

A cloud disk moving between nodes (docs/csi.md, "Moving a workload"): NodeStage of a disk
another node still holds, which the controller published here (`publish_context`), waits
up to `stage_wait` s for that node to let go, then answers ABORTED (retryable); the last
NodeUnpublish of a cloud disk on a node releases it (unmount + detach), since Swarm never
calls NodeUnstageVolume on a single-node volume; NodeExpandVolume grows the filesystem
on the node where the disk is staged."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import grpc

from orlop.core import targets
from orlop.core.failpoints import failpoint
from orlop.core.model import HeldElsewhere, NotFound, Volume
from orlop.core.service import VolumeService
from orlop.frontends.csi.errors import CsiError, InFlight, invalid, require
from orlop.frontends.csi.messages import enum_value, message
from orlop.frontends.csi.server import Call
from orlop.frontends.csi.shape import DriverShape, is_raw, mismatch

STAGE_HOLDER = "csi-stage:"
PUBLISH_HOLDER = "csi-publish:"


def _m(name: str, **fields: Any) -> Any:
    return message(name)(**fields)


class Node:
    def __init__(
        self,
        service: VolumeService,
        shape: DriverShape,
        node_id: str,
        in_flight: InFlight,
        stage_wait: float = 10.0,
    ) -> None:
        self.service = service
        self.shape = shape
        self.driver = shape.driver
        self.node_id = node_id
        self.in_flight = in_flight
        self.stage_wait = stage_wait
        # (volume, staging path) of stages the last NodeUnpublish released (a cloud disk):
        # the orchestrator still thinks them staged, so a NodePublish there stages again.
        self.released: set[tuple[str, str]] = set()

    def calls(self) -> dict[str, Call]:
        return {
            "NodeStageVolume": self.stage,
            "NodeUnstageVolume": self.unstage,
            "NodePublishVolume": self.publish,
            "NodeUnpublishVolume": self.unpublish,
            "NodeGetVolumeStats": self.stats,
            "NodeExpandVolume": self.expand,
            "NodeGetCapabilities": self.get_capabilities,
            "NodeGetInfo": self.get_info,
        }

    async def _known(self, name: str, context: dict[str, str]) -> Volume:
        try:
            return self.service.get(self.driver, name)
        except NotFound:
            if self.shape.local or not context:
                raise
        # A global volume another node's controller made: adopt it under the same options.
        return await self.service.create(self.driver, name, context)

    def _check(self, request: Any, call: str) -> None:
        if not request.HasField("volume_capability"):
            raise invalid(f"{call}: volume_capability is required")
        problem = self.shape.unsupported(request.volume_capability)
        if problem:
            raise invalid(f"{call}: {problem}")

    @staticmethod
    def _fits(volume: Volume, request: Any) -> None:
        """Refuse a raw volume asked for as a filesystem, and the other way round."""
        problem = mismatch(volume.name, volume.options, request.volume_capability)
        if problem:
            raise CsiError(grpc.StatusCode.FAILED_PRECONDITION, problem)

    async def stage(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "NodeStageVolume")
        staging = require(request.staging_target_path, "staging_target_path", "NodeStageVolume")
        self._check(request, "NodeStageVolume")
        with self.in_flight.guard(name):
            await self._stage(request, name, staging)
        return _m("NodeStageVolumeResponse")

    async def _stage(self, request: Any, name: str, staging: str) -> None:
        volume = await self._known(name, dict(request.volume_context))
        self._fits(volume, request)
        path = await self._mount_stage(name, staging, dict(request.publish_context))
        failpoint("csi.node_stage.after_attach")
        if not is_raw(volume.options):  # a raw device is bound at each target only
            await asyncio.to_thread(targets.bind, path, staging, False)
        self.released.discard((name, staging))

    async def _mount_stage(self, name: str, staging: str, publish_context: dict[str, str]) -> str:
        """The core's mount for the stage at `staging`. A disk another node holds while the
        controller has published it to this one (its publish_context names this node) is
        moving here: the old node is letting go (its NodeUnpublish or NodeUnstage detaches
        it). Waited for up to stage_wait s, then ABORTED, which the orchestrator retries;
        a disk held elsewhere that nobody published here stays FAILED_PRECONDITION."""
        deadline = time.monotonic() + self.stage_wait
        pause = 0.05
        while True:
            try:
                return await self.service.mount(self.driver, name, STAGE_HOLDER + staging)
            except HeldElsewhere as error:
                if publish_context.get("node") != self.node_id:
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CsiError(
                        grpc.StatusCode.ABORTED,
                        f"{error} — the controller published it to this node "
                        f"({self.node_id}), and {error.holder or 'the other node'} did not "
                        f"let go of it within {self.stage_wait:g}s (csi.stage_wait): retry",
                    ) from None
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, 1.0)

    def _staged_at(self, name: str, staging: str) -> str:
        """The volume staged at `staging`: `name`, or (Swarm names a volume by its own ID
        in NodeUnstage) the one whose stage holder is that path."""
        volumes = self.service.list(self.driver)
        if any(volume.name == name for volume in volumes):
            return name
        for volume in volumes:
            if STAGE_HOLDER + staging in volume.mount_ids:
                return volume.name
        raise NotFound(f"volume {name} not found (driver {self.driver})")

    async def unstage(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "NodeUnstageVolume")
        staging = require(request.staging_target_path, "staging_target_path", "NodeUnstageVolume")
        name = self._staged_at(name, staging)
        with self.in_flight.guard(name):
            self.released.discard((name, staging))
            await asyncio.to_thread(targets.unmount, staging)
            failpoint("csi.node_unstage.after_unbind")
            await self.service.unmount(self.driver, name, STAGE_HOLDER + staging)
        return _m("NodeUnstageVolumeResponse")

    async def publish(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "NodePublishVolume")
        staging = require(request.staging_target_path, "staging_target_path", "NodePublishVolume")
        target = require(request.target_path, "target_path", "NodePublishVolume")
        self._check(request, "NodePublishVolume")
        volume = self.service.get(self.driver, name)
        self._fits(volume, request)
        raw = is_raw(volume.options)
        if raw and request.readonly:
            raise invalid(
                f"NodePublishVolume: volume {name} is a raw block volume: a read-only "
                "publish is not offered (a read-only bind of a device file does not stop "
                "writes to the device); publish it read-write"
            )
        staged = STAGE_HOLDER + staging in volume.mount_ids
        # Released at its last unpublish (remembered here; after a restart, a cloud disk the
        # controller published to this node says so in its publish_context).
        released = (name, staging) in self.released or (
            self.shape.exclusive and request.publish_context.get("node") == self.node_id
        )
        if not staged and not released:
            raise CsiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"volume {name} is not staged at {staging}: NodeStageVolume first",
            )
        with self.in_flight.guard(name):
            if not staged:  # released at its last unpublish: staged again, as it was
                await self._stage(request, name, staging)
                volume = self.service.get(self.driver, name)
            if targets.is_mounted(target) and targets.read_only(target) != request.readonly:
                raise CsiError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"volume {name} is published at {target} "
                    f"{'read-write' if request.readonly else 'read-only'}: unpublish it first",
                )
            # Recorded first: a crash between the two leaves a holder NodeUnpublish drops.
            await self.service.hold(self.driver, name, PUBLISH_HOLDER + target)
            failpoint("csi.node_publish.after_hold")
            if raw:  # the device file the core's attach bound at the volume's mountpoint
                await asyncio.to_thread(targets.bind_device, volume.mountpoint, target)
            else:
                await asyncio.to_thread(targets.bind, staging, target, request.readonly)
        return _m("NodePublishVolumeResponse")

    async def unpublish(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "NodeUnpublishVolume")
        target = require(request.target_path, "target_path", "NodeUnpublishVolume")
        with self.in_flight.guard(name):
            self.service.get(self.driver, name)
            await asyncio.to_thread(targets.unbind, target)
            failpoint("csi.node_unpublish.after_unbind")
            await self.service.unmount(self.driver, name, PUBLISH_HOLDER + target)
            if self.shape.exclusive:
                # A single-node disk: Swarm never calls NodeUnstageVolume for it, and the
                # next node cannot attach it until this one lets go. Released here once
                # nothing else on this node uses it; a later NodeUnstage changes nothing.
                for staging in await release_idle_stages(self.service, self.driver, name):
                    self.released.add((name, staging))
        return _m("NodeUnpublishVolumeResponse")

    async def stats(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "NodeGetVolumeStats")
        path = require(request.volume_path, "volume_path", "NodeGetVolumeStats")
        volume = self.service.get(self.driver, name)
        if not os.path.exists(path):
            raise CsiError(grpc.StatusCode.NOT_FOUND, f"volume path {path} does not exist")
        unit = enum_value("VolumeUsage", "Unit", "BYTES")
        if is_raw(volume.options):  # what a raw device holds is its user's: its size only
            size = await asyncio.to_thread(targets.device_size, path)
            usage = [_m("VolumeUsage", unit=unit, total=size)]
            return _m("NodeGetVolumeStatsResponse", usage=usage)
        fs = await asyncio.to_thread(os.statvfs, path)
        inodes = enum_value("VolumeUsage", "Unit", "INODES")
        usage = [
            _m(
                "VolumeUsage",
                unit=unit,
                total=fs.f_blocks * fs.f_frsize,
                available=fs.f_bavail * fs.f_frsize,
                used=(fs.f_blocks - fs.f_bfree) * fs.f_frsize,
            ),
            _m(
                "VolumeUsage",
                unit=inodes,
                total=fs.f_files,
                available=fs.f_favail,
                used=fs.f_files - fs.f_ffree,
            ),
        ]
        return _m("NodeGetVolumeStatsResponse", usage=usage)

    async def expand(self, request: Any) -> Any:
        """Grow the filesystem where the volume is staged. A cloud disk's controller (often
        another host) grew the disk only: this node grows what it has mounted (the device
        seen at its new size, then the filesystem, online). Elsewhere the controller's
        expand, on the host that holds the volume, grew the filesystem too."""
        name = require(request.volume_id, "volume_id", "NodeExpandVolume")
        volume = self.service.get(self.driver, name)
        if self.shape.exclusive and not is_raw(volume.options):
            wanted = request.capacity_range.required_bytes or request.capacity_range.limit_bytes
            if not wanted:
                raise invalid("NodeExpandVolume: capacity_range.required_bytes is required")
            if not any(h.startswith(STAGE_HOLDER) for h in volume.mount_ids):
                raise CsiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"volume {name} is not staged on this node ({self.node_id}): "
                    "NodeExpandVolume grows the filesystem on the node where it is staged",
                )
            with self.in_flight.guard(name):
                current = int(volume.options.get("size", "0"))
                volume = await self.service.resize(self.driver, name, max(wanted, current))
        return _m("NodeExpandVolumeResponse", capacity_bytes=int(volume.options.get("size", "0")))

    async def get_capabilities(self, request: Any) -> Any:
        rpcs = ["STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS"]
        if self.shape.resize:
            rpcs.append("EXPAND_VOLUME")
        capabilities = [
            _m(
                "NodeServiceCapability",
                rpc=_m(
                    "NodeServiceCapability.RPC",
                    type=enum_value("NodeServiceCapability.RPC", "Type", rpc),
                ),
            )
            for rpc in rpcs
        ]
        return _m("NodeGetCapabilitiesResponse", capabilities=capabilities)

    async def get_info(self, request: Any) -> Any:
        topology = self.shape.topology(self.node_id)
        return _m(
            "NodeGetInfoResponse",
            node_id=self.node_id,
            accessible_topology=topology[0] if topology else None,
        )


async def release_idle_stages(service: VolumeService, driver: str, name: str) -> list[str]:
    """Unstage `name` where it is staged but published nowhere on this node (the last
    stage's unmount detaches it); the staging paths released.

    Swarm does not always call NodeUnstageVolume (before DeleteVolume; never for a
    single-node volume); CSI stages with no target (and no Docker container) hold nothing
    a workload uses."""
    volume = service.get(driver, name)
    holders = sorted(volume.mount_ids)
    if not holders or not all(h.startswith(STAGE_HOLDER) for h in holders):
        return []
    for holder in holders:
        await asyncio.to_thread(targets.unmount, holder.removeprefix(STAGE_HOLDER))
        await service.unmount(driver, name, holder)
    return [holder.removeprefix(STAGE_HOLDER) for holder in holders]
