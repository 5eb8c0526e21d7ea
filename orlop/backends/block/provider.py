"""The DeviceProvider protocol: what a block provider (loop file, EBS, GCE PD, …) implements.

A provider only makes a block device exist and appear on this host. Everything above the
device — detect an existing filesystem, format on first use, mount with safe defaults,
grow online, crash-safe ordering — is the shared block layer's (`BlockBackend` over
`filesystem.py`), so every provider gets it once and the same way.

All methods are blocking and idempotent (the service repeats steps after a crash), and run
under the volume's lock.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef
from orlop.backends.settings import BackendSettings
from orlop.core.options import OptionSet


@runtime_checkable
class DeviceProvider(Protocol):
    kind: ClassVar[str]
    # The provider's own options (size, type, iops, …). The block layer adds its filesystem
    # options (fs, mkfs_options, mount_options) to these.
    options: ClassVar[OptionSet]
    # The driver's settings, the block layer's `allow_suid_dev` among them (BlockSettings).
    settings_model: ClassVar[type[BackendSettings]]
    capabilities: Capabilities

    def __init__(self, context: BackendContext) -> None: ...

    def validate(self, name: str, options: dict[str, str]) -> None:
        """Reject option combinations before anything is allocated."""

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        """Allocate the storage (image file, cloud disk); return the record to persist."""

    def remove(self, volume: VolumeRef) -> None:
        """Free the storage; already gone is not an error."""

    def attach_device(self, volume: VolumeRef) -> str:
        """Make the block device appear on this host; return its path (/dev/loopN, …)."""

    def detach_device(self, volume: VolumeRef) -> None:
        """Release the device from this host; not attached is not an error."""

    def device_path(self, volume: VolumeRef) -> str | None:
        """The device's path if it is attached to this host now, else None."""

    def grow(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        """Grow the device to `size` bytes (shrinking is refused); return the new record."""

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        """Facts for Status from the record (IDs, zone, type); no I/O, no secrets."""

    @classmethod
    def host_checks(cls) -> list[Check]:
        """Tools and kernel features this provider needs, for `orlop doctor`."""
