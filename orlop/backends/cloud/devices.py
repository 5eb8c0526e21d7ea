"""Finding an attached disk's block device on this host, from the paths a provider names
(the implementation lives in `orlop.host.blockdevices`, behind the `BlockDevices` seam)."""

from orlop.host.blockdevices import block_device, device_bytes, find_device

__all__ = ["block_device", "device_bytes", "find_device"]
