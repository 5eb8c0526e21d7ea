"""CSI Controller for one driver: create/delete, publish (a node's claim), snapshots, expand.

CSI parameters are Orlop's option names, validated by the backend's own option set (same
messages as `docker volume create`); `size` comes from the capacity range. Parameters whose
key holds a "/" are the orchestrator's own metadata (csi.storage.k8s.io/…) and are ignored.
A raw block volume is asked for with the block access type (never a parameter); it is made
with the block layer's `volume_mode=block`, and stays raw.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import grpc

from orlop.core import capacity
from orlop.core.failpoints import failpoint
from orlop.core.model import Conflict, NotFound, Volume
from orlop.core.service import VolumeService
from orlop.frontends.csi.errors import CsiError, InFlight, invalid, require
from orlop.frontends.csi.messages import enum_value, message
from orlop.frontends.csi.node import release_idle_stages
from orlop.frontends.csi.publications import Publications
from orlop.frontends.csi.server import Call
from orlop.frontends.csi.shape import (
    RAW,
    TOPOLOGY_KEY,
    VOLUME_MODE,
    ZONE_KEY,
    DriverShape,
    is_raw,
    mismatch,
    mode_name,
)


def _m(name: str, **fields: Any) -> Any:
    return message(name)(**fields)


class Controller:
    def __init__(
        self,
        service: VolumeService,
        shape: DriverShape,
        node_id: str,
        publications: Publications,
        in_flight: InFlight,
    ) -> None:
        self.service = service
        self.shape = shape
        self.driver = shape.driver
        self.node_id = node_id
        self.publications = publications
        self.in_flight = in_flight

    def calls(self) -> dict[str, Call]:
        calls: dict[str, Call] = {
            "CreateVolume": self.create_volume,
            "DeleteVolume": self.delete_volume,
            "ValidateVolumeCapabilities": self.validate_capabilities,
            "ListVolumes": self.list_volumes,
            "ControllerGetCapabilities": self.get_capabilities,
        }
        if self.shape.exclusive:
            calls["ControllerPublishVolume"] = self.publish
            calls["ControllerUnpublishVolume"] = self.unpublish
        if self.shape.snapshots:
            calls["CreateSnapshot"] = self.create_snapshot
            calls["DeleteSnapshot"] = self.delete_snapshot
            calls["ListSnapshots"] = self.list_snapshots
        if self.shape.resize:
            calls["ControllerExpandVolume"] = self.expand
        if self.shape.capacity:
            calls["GetCapacity"] = self.get_capacity
        return calls

    # volumes ------------------------------------------------------------------------------
    def options_for(self, request: Any, raw: bool) -> dict[str, str]:
        options = parameters_of(request, "CreateVolume")
        if raw:
            options[VOLUME_MODE] = RAW
        wanted = request.capacity_range.required_bytes or request.capacity_range.limit_bytes
        if wanted and self.shape.has_size:
            options["size"] = str(wanted)
        for capability in request.volume_capabilities:
            fs = capability.mount.fs_type if capability.HasField("mount") else ""
            if fs and self.shape.has_fs:
                options.setdefault("fs", fs)
        source = request.volume_content_source
        if source.HasField("snapshot"):
            options["from_snapshot"] = source.snapshot.snapshot_id
        elif source.HasField("volume"):
            if not self.shape.clones:
                raise invalid(f"driver {self.driver} ({self.shape.kind}) cannot clone volumes")
            options["from_volume"] = source.volume.volume_id
        return options

    def volume_message(self, volume: Volume) -> Any:
        source = None
        if "from_snapshot" in volume.options:
            source = _m(
                "VolumeContentSource",
                snapshot=_m(
                    "VolumeContentSource.SnapshotSource",
                    snapshot_id=volume.options["from_snapshot"],
                ),
            )
        elif "from_volume" in volume.options:
            source = _m(
                "VolumeContentSource",
                volume=_m(
                    "VolumeContentSource.VolumeSource", volume_id=volume.options["from_volume"]
                ),
            )
        return _m(
            "Volume",
            volume_id=volume.name,
            capacity_bytes=int(volume.options.get("size", "0")),
            # What NodeStage needs on any node: the driver's canonical options (never secret).
            volume_context=dict(volume.options),
            content_source=source,
            accessible_topology=self.shape.topology(self.node_id),
        )

    async def create_volume(self, request: Any) -> Any:
        name = require(request.name, "name", "CreateVolume")
        raw = self.shape.check_capabilities(request.volume_capabilities, "CreateVolume")
        options = self.options_for(request, raw)
        limit = request.capacity_range.limit_bytes
        with self.in_flight.guard(name):
            try:
                volume = await self.service.create(self.driver, name, options)
            except Conflict as error:
                raise CsiError(grpc.StatusCode.ALREADY_EXISTS, str(error)) from None
            except NotFound as error:  # a content source that does not exist
                raise CsiError(grpc.StatusCode.NOT_FOUND, str(error)) from None
        problem = mismatch(name, volume.options, request.volume_capabilities[0])
        if problem:  # an existing volume of the other access type
            raise CsiError(grpc.StatusCode.ALREADY_EXISTS, problem)
        if self.shape.has_size and "size" in volume.options:
            size = int(volume.options["size"])
            if limit and size > limit:
                raise CsiError(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"volume {name} would be {size} bytes: over limit_bytes {limit}",
                )
        return _m("CreateVolumeResponse", volume=self.volume_message(volume))

    async def delete_volume(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "DeleteVolume")
        with self.in_flight.guard(name):
            if self.publications.of(name):
                nodes = ", ".join(self.publications.of(name))
                raise CsiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"volume {name} is published to node {nodes}: unpublish it first",
                )
            with contextlib.suppress(NotFound):  # already gone: DeleteVolume is idempotent
                await release_idle_stages(self.service, self.driver, name)
                await self.service.remove(self.driver, name)
        return _m("DeleteVolumeResponse")

    def _volume(self, name: str) -> Volume:
        return self.service.get(self.driver, name)

    async def validate_capabilities(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "ValidateVolumeCapabilities")
        if not request.volume_capabilities:
            raise invalid("ValidateVolumeCapabilities: volume_capabilities is required")
        volume = self._volume(name)
        problems = [
            self.shape.unsupported(c) or mismatch(name, volume.options, c)
            for c in request.volume_capabilities
        ]
        message_text = "; ".join(p for p in problems if p)
        if message_text:
            return _m("ValidateVolumeCapabilitiesResponse", message=message_text)
        confirmed = _m(
            "ValidateVolumeCapabilitiesResponse.Confirmed",
            volume_capabilities=list(request.volume_capabilities),
            volume_context=dict(request.volume_context),
            parameters=dict(request.parameters),
        )
        return _m("ValidateVolumeCapabilitiesResponse", confirmed=confirmed)

    async def list_volumes(self, request: Any) -> Any:
        volumes = sorted(self.service.list(self.driver), key=lambda v: v.name)
        start = _token(request.starting_token, len(volumes))
        end = start + request.max_entries if request.max_entries else len(volumes)
        entries = [
            _m("ListVolumesResponse.Entry", volume=self.volume_message(v))
            for v in volumes[start:end]
        ]
        following = str(end) if end < len(volumes) else ""
        return _m("ListVolumesResponse", entries=entries, next_token=following)

    async def get_capabilities(self, request: Any) -> Any:
        capabilities = [
            _m(
                "ControllerServiceCapability",
                rpc=_m(
                    "ControllerServiceCapability.RPC",
                    type=enum_value("ControllerServiceCapability.RPC", "Type", rpc),
                ),
            )
            for rpc in self.shape.controller_rpcs()
        ]
        return _m("ControllerGetCapabilitiesResponse", capabilities=capabilities)

    # publish: the claim of one node on a single-node volume -------------------------------
    async def publish(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "ControllerPublishVolume")
        node = require(request.node_id, "node_id", "ControllerPublishVolume")
        if not request.HasField("volume_capability"):
            raise invalid("ControllerPublishVolume: volume_capability is required")
        problem = self.shape.unsupported(request.volume_capability)
        if problem:
            raise invalid(f"ControllerPublishVolume: {problem}")
        with self.in_flight.guard(name):
            problem = mismatch(name, self._volume(name).options, request.volume_capability)
            if problem:
                raise CsiError(grpc.StatusCode.FAILED_PRECONDITION, problem)
            held = [n for n in self.publications.of(name) if n != node]
            if held:
                raise CsiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"volume {name} ({mode_name(request.volume_capability.access_mode.mode)}) "
                    f"is published to node {', '.join(held)}: unpublish it there first",
                )
            self.publications.add(name, node)
            failpoint("csi.controller_publish.after_claim")
        return _m("ControllerPublishVolumeResponse", publish_context={"node": node})

    async def unpublish(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "ControllerUnpublishVolume")
        with self.in_flight.guard(name):
            self.publications.drop(name, request.node_id or None)
            failpoint("csi.controller_unpublish.after_release")
        return _m("ControllerUnpublishVolumeResponse")

    # capacity -----------------------------------------------------------------------------
    async def get_capacity(self, request: Any) -> Any:
        """The free bytes new volumes with these parameters can take (where the storage can
        say: see DriverShape.capacity); 0 for a topology this driver does not reach."""
        if request.volume_capabilities:
            self.shape.check_capabilities(request.volume_capabilities, "GetCapacity")
        parameters = parameters_of(request, "GetCapacity")
        if request.HasField("accessible_topology") and not self._reaches(
            dict(request.accessible_topology.segments)
        ):
            return _m("GetCapacityResponse", available_capacity=0)
        available = await capacity.available_capacity(
            self.service.registry, self.driver, parameters
        )
        if available is None:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(parameters.items()))
            raise invalid(
                f"GetCapacity: driver {self.driver} ({self.shape.kind}) cannot tell how much "
                f"room volumes with {shown} have (their storage is not its to measure): "
                "ask without those parameters"
            )
        return _m("GetCapacityResponse", available_capacity=available)

    def _reaches(self, segments: dict[str, str]) -> bool:
        """Whether this driver provisions in the topology `segments`."""
        ours = {k: v for t in self.shape.topology(self.node_id) for k, v in t.segments.items()}
        unknown = sorted(set(segments) - {TOPOLOGY_KEY, ZONE_KEY})
        if unknown:
            raise invalid(
                f"GetCapacity: unknown topology key {', '.join(unknown)}: this driver's "
                f"topology keys are {TOPOLOGY_KEY} and {ZONE_KEY} (what NodeGetInfo returns)"
            )
        return all(ours.get(key) == value for key, value in segments.items())

    # snapshots ----------------------------------------------------------------------------
    def snapshot_message(self, snapshot: dict[str, Any]) -> Any:
        made = _m(
            "Snapshot",
            snapshot_id=str(snapshot["name"]),
            source_volume_id=str(snapshot.get("volume", "")),
            size_bytes=int(snapshot.get("size") or 0),
            ready_to_use=snapshot.get("state", "ready") in ("ready", "available", "completed"),
        )
        created = str(snapshot.get("created_at", ""))
        if created:
            moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
            made.creation_time.seconds = int(moment.timestamp())
        return made

    async def create_snapshot(self, request: Any) -> Any:
        source = require(request.source_volume_id, "source_volume_id", "CreateSnapshot")
        name = require(request.name, "name", "CreateSnapshot")
        with self.in_flight.guard(source):
            for existing in await self.service.list_snapshots(self.driver):
                if existing.get("name") == name:
                    if existing.get("volume") != source:
                        raise CsiError(
                            grpc.StatusCode.ALREADY_EXISTS,
                            f"snapshot {name} exists, of volume {existing.get('volume')}",
                        )
                    return _m("CreateSnapshotResponse", snapshot=self.snapshot_message(existing))
            made = await self.service.create_snapshot(self.driver, source, name)
        return _m("CreateSnapshotResponse", snapshot=self.snapshot_message(made))

    async def delete_snapshot(self, request: Any) -> Any:
        snapshot = require(request.snapshot_id, "snapshot_id", "DeleteSnapshot")
        with contextlib.suppress(NotFound):  # already gone
            await self.service.delete_snapshot(self.driver, snapshot)
        return _m("DeleteSnapshotResponse")

    async def list_snapshots(self, request: Any) -> Any:
        found = await self.service.list_snapshots(self.driver, request.source_volume_id or None)
        if request.snapshot_id:
            found = [s for s in found if request.snapshot_id in (s.get("name"), s.get("id"))]
        found.sort(key=lambda s: str(s.get("name")))
        start = _token(request.starting_token, len(found))
        end = start + request.max_entries if request.max_entries else len(found)
        entries = [
            _m("ListSnapshotsResponse.Entry", snapshot=self.snapshot_message(s))
            for s in found[start:end]
        ]
        following = str(end) if end < len(found) else ""
        return _m("ListSnapshotsResponse", entries=entries, next_token=following)

    # expansion ----------------------------------------------------------------------------
    async def expand(self, request: Any) -> Any:
        name = require(request.volume_id, "volume_id", "ControllerExpandVolume")
        wanted = request.capacity_range.required_bytes or request.capacity_range.limit_bytes
        if not wanted:
            raise invalid("ControllerExpandVolume: capacity_range.required_bytes is required")
        with self.in_flight.guard(name):
            volume = self._volume(name)
            current = int(volume.options.get("size", "0"))
            if current < wanted:
                volume = await self.service.resize(self.driver, name, wanted)
        size = int(volume.options.get("size", "0"))
        limit = request.capacity_range.limit_bytes
        if limit and size > limit:
            raise CsiError(
                grpc.StatusCode.OUT_OF_RANGE, f"volume {name} is {size} bytes, over {limit}"
            )
        # A cloud disk staged on another node (or nowhere): the disk grew; its filesystem
        # grows on the node that stages it (NodeExpandVolume there).
        elsewhere = self.shape.exclusive and not is_raw(volume.options) and not volume.mount_ids
        return _m(
            "ControllerExpandVolumeResponse",
            capacity_bytes=size,
            node_expansion_required=elsewhere,
        )


def parameters_of(request: Any, call: str) -> dict[str, str]:
    """A request's parameters as Orlop options: the orchestrator's own (a "/" in the key)
    left out; the size and the volume mode refused, since the request says them itself."""
    options = {k: v for k, v in request.parameters.items() if "/" not in k}
    if "size" in options:
        raise invalid(
            f"{call}: size is not a parameter: the orchestrator's capacity range "
            "(e.g. a PVC's storage request, docker's --limit-bytes) gives it"
        )
    if VOLUME_MODE in options:
        raise invalid(
            f"{call}: {VOLUME_MODE} is not a parameter: the volume capability's access type "
            "(block for a raw block volume, mount for a filesystem) gives it"
        )
    return options


def _token(token: str, total: int) -> int:
    if not token:
        return 0
    if not token.isdigit() or int(token) > total:
        raise CsiError(grpc.StatusCode.ABORTED, f"starting_token {token!r} is not valid")
    return int(token)
