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
csi.node_publish.after_hold, csi.node_unpublish.after_unbind, csi.node_unstage.after_unbind."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import grpc

from orlop.core import targets
from orlop.core.failpoints import failpoint
from orlop.core.model import NotFound, Volume
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
        self, service: VolumeService, shape: DriverShape, node_id: str, in_flight: InFlight
    ) -> None:
        self.service = service
        self.shape = shape
        self.driver = shape.driver
        self.node_id = node_id
        self.in_flight = in_flight

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
            volume = await self._known(name, dict(request.volume_context))
            self._fits(volume, request)
            path = await self.service.mount(self.driver, name, STAGE_HOLDER + staging)
            failpoint("csi.node_stage.after_attach")
            if not is_raw(volume.options):  # a raw device is bound at each target only
                await asyncio.to_thread(targets.bind, path, staging, False)
        return _m("NodeStageVolumeResponse")

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
        if STAGE_HOLDER + staging not in volume.mount_ids:
            raise CsiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"volume {name} is not staged at {staging}: NodeStageVolume first",
            )
        with self.in_flight.guard(name):
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
        # The controller's expand grows the filesystem too (online): nothing left to do here.
        name = require(request.volume_id, "volume_id", "NodeExpandVolume")
        volume = self.service.get(self.driver, name)
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


async def release_idle_stages(service: VolumeService, driver: str, name: str) -> None:
    """Unstage `name` where it is staged but published nowhere on this node.

    Swarm does not always call NodeUnstageVolume before DeleteVolume; CSI stages with no
    target (and no Docker container) hold nothing a workload uses."""
    volume = service.get(driver, name)
    holders = set(volume.mount_ids)
    if not holders or not all(h.startswith(STAGE_HOLDER) for h in holders):
        return
    for holder in holders:
        await asyncio.to_thread(targets.unmount, holder.removeprefix(STAGE_HOLDER))
        await service.unmount(driver, name, holder)
