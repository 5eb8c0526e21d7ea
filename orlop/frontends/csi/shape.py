"""The CSI shape of one driver: which capabilities, access modes and topology are true for it.

Decided once, from the backend's Capabilities (never from its class):
* exclusive_attach (cloud disks): controller publish = the claim of one node, single-node
  access modes only;
* global without exclusive_attach (shares, network filesystems): every access mode, no
  controller publish;
* local (directory, loopfile): single-node access modes, topology pinned to this node.

Raw block volumes (the `block` access type) where the backend has the block layer's
`volume_mode` option (loopfile and the cloud disks); a volume's mode is fixed when it is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orlop.frontends.csi.errors import invalid
from orlop.frontends.csi.messages import enum_value, message

if TYPE_CHECKING:
    from orlop.backends.base import Backend

TOPOLOGY_KEY = "topology.orlop.dev/node"
ZONE_KEY = "topology.orlop.dev/zone"
PLUGIN_DOMAIN = "csi.orlop.dev"
# The block layer's option (backends/block/filesystem.py): "block" = a raw device.
VOLUME_MODE = "volume_mode"
RAW = "block"
# The kinds over the block layer (every one has VOLUME_MODE), named in refusals.
BLOCK_KINDS = "loopfile, ebs, gce, digitalocean, cinder, powerflex, vsphere"

SINGLE_NODE_MODES = ("SINGLE_NODE_WRITER", "SINGLE_NODE_READER_ONLY")
ALL_MODES = (
    *SINGLE_NODE_MODES,
    "MULTI_NODE_READER_ONLY",
    "MULTI_NODE_SINGLE_WRITER",
    "MULTI_NODE_MULTI_WRITER",
)


def plugin_name(driver: str) -> str:
    """The CSI driver name for Orlop driver `driver`: `<driver>.csi.orlop.dev`."""
    label = re.sub(r"[^a-z0-9-]", "-", driver.lower()).strip("-")[:40] or "orlop"
    return f"{label}.{PLUGIN_DOMAIN}"


def mode_number(name: str) -> int:
    return enum_value("VolumeCapability.AccessMode", "Mode", name)


def mode_name(number: int) -> str:
    from orlop.frontends.csi.messages import csi_file

    enum = csi_file().pool.FindEnumTypeByName("csi.v1.VolumeCapability.AccessMode.Mode")
    return str(enum.values_by_number[number].name) if number in enum.values_by_number else "?"


@dataclass(frozen=True, slots=True)
class DriverShape:
    driver: str
    kind: str
    local: bool
    exclusive: bool
    snapshots: bool
    clones: bool
    resize: bool
    has_size: bool
    has_fs: bool
    zone: str | None = None  # a cloud disk's: where it can be attached
    raw_block: bool = False  # raw block volumes (the block layer's volume_mode option)
    capacity: bool = False  # GetCapacity answers (the backend can say its free bytes)

    @classmethod
    def of(
        cls, driver: str, backend: Backend, zone: str | None = None, capacity: bool = False
    ) -> DriverShape:
        caps = backend.capabilities
        options = backend.options.options
        return cls(
            driver=driver,
            kind=backend.kind,
            local=caps.scope == "local",
            exclusive=caps.exclusive_attach,
            snapshots=caps.snapshot,
            clones=caps.clone and "from_volume" in options,
            resize=caps.resize,
            has_size="size" in options,
            has_fs="fs" in options,
            zone=zone if caps.exclusive_attach else None,
            raw_block=VOLUME_MODE in options,
            capacity=capacity,
        )

    @property
    def modes(self) -> tuple[str, ...]:
        return SINGLE_NODE_MODES if self.local or self.exclusive else ALL_MODES

    def controller_rpcs(self) -> list[str]:
        rpcs = ["CREATE_DELETE_VOLUME", "LIST_VOLUMES"]
        if self.exclusive:
            rpcs.append("PUBLISH_UNPUBLISH_VOLUME")
        if self.snapshots:
            rpcs += ["CREATE_DELETE_SNAPSHOT", "LIST_SNAPSHOTS"]
        if self.clones:
            rpcs.append("CLONE_VOLUME")
        if self.resize:
            rpcs.append("EXPAND_VOLUME")
        if self.capacity:
            rpcs.append("GET_CAPACITY")
        return rpcs

    def unsupported(self, capability: Any) -> str:
        """Why `capability` (a VolumeCapability) cannot be served, or "" if it can."""
        if capability.HasField("block") and not self.raw_block:
            return (
                f"driver {self.driver} ({self.kind}) serves filesystem volumes, not raw block: "
                f"raw block volumes are offered by drivers of the block kinds ({BLOCK_KINDS})"
            )
        if not capability.HasField("mount") and not capability.HasField("block"):
            return "a volume capability needs an access type (mount or block)"
        mode = mode_name(capability.access_mode.mode)
        if mode not in self.modes:
            return (
                f"driver {self.driver} ({self.kind}) does not offer access mode {mode}: "
                f"allowed are {', '.join(self.modes)}"
            )
        return ""

    def check_capabilities(self, capabilities: Any, call: str) -> bool:
        """Refuse capabilities this driver cannot serve; True if they ask for raw block."""
        if not capabilities:
            raise invalid(f"{call}: volume_capabilities is required")
        for capability in capabilities:
            problem = self.unsupported(capability)
            if problem:
                raise invalid(f"{call}: {problem}")
        raw = {capability.HasField("block") for capability in capabilities}
        if len(raw) > 1:
            raise invalid(
                f"{call}: a volume is either raw block or a filesystem: ask for the block or "
                "the mount access type, not both"
            )
        return raw == {True}

    def topology(self, node_id: str) -> list[Any]:
        """Where a volume is reachable: a host-local one on this node, a disk in its zone."""
        if self.local:
            return [message("Topology")(segments={TOPOLOGY_KEY: node_id})]
        if self.zone:
            return [message("Topology")(segments={ZONE_KEY: self.zone})]
        return []


def is_raw(options: dict[str, str]) -> bool:
    """A raw block volume (its options say `volume_mode=block`)."""
    return options.get(VOLUME_MODE) == RAW


def mismatch(name: str, options: dict[str, str], capability: Any) -> str:
    """Why volume `name` cannot be used with `capability` (a raw volume as a filesystem, a
    filesystem volume as raw block), or "". A volume's mode is fixed when it is made: the
    service never formats a raw volume, and never hands out the device under a filesystem."""
    raw = is_raw(options)
    if raw and not capability.HasField("block"):
        return (
            f"volume {name} is a raw block volume: it has no filesystem to mount; "
            "use it with the block access type (or create a filesystem volume)"
        )
    if not raw and capability.HasField("block"):
        return (
            f"volume {name} holds a filesystem: it is not offered as a raw block device "
            "(writes to the device would corrupt it); use the mount access type, or "
            "create a raw block volume"
        )
    return ""
