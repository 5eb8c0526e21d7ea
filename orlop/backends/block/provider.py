"""The DeviceProvider protocol: what a block provider (loop file, EBS, GCE PD, …) implements.

A provider only makes a block device exist and appear on this host. Everything above the
device — detect an existing filesystem, format on first use, mount with safe defaults,
grow online, crash-safe ordering — is the shared block layer's (`BlockBackend` over
`filesystem.py`), so every provider gets it once and the same way.

All methods are blocking and idempotent (the service repeats steps after a crash), and run
under the volume's lock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef
from orlop.backends.settings import BackendSettings
from orlop.core.options import OptionSet


@runtime_checkable
class DeviceProvider(Protocol):
    """A class attribute or an instance's, either will do (read only here)."""

    @property
    def kind(self) -> str: ...

    # The provider's own options (size, type, iops, …). The block layer adds its filesystem
    # options (fs, mkfs_options, mount_options) to these.
    @property
    def options(self) -> OptionSet: ...

    # The driver's settings, the block layer's `allow_suid_dev` among them (BlockSettings).
    @property
    def settings_model(self) -> type[BackendSettings]: ...

    @property
    def capabilities(self) -> Capabilities: ...

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

    def host_checks(self) -> list[Check]:
        """Tools and kernel features this provider needs, for `orlop doctor` (a classmethod
        where the class knows: `ProviderSpec.of` asks the class)."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What a device provider makes of a backend kind, read without an instance: its kind,
    options, settings model and capabilities, how to make one (`make(context)`, seams as
    keywords) and its doctor checks. `BlockBackend.spec()` adds the filesystem layer's part."""

    kind: str
    options: OptionSet
    settings_model: type[BackendSettings]
    capabilities: Capabilities
    make: Callable[..., DeviceProvider]
    host_checks: Callable[[], list[Check]]

    @classmethod
    def of(cls, provider: type[DeviceProvider]) -> ProviderSpec:
        """The spec a provider class states in its class attributes."""
        return cls(
            kind=getattr(provider, "kind"),  # noqa: B009 - class attributes, protocol properties
            options=getattr(provider, "options"),  # noqa: B009
            settings_model=getattr(provider, "settings_model"),  # noqa: B009
            capabilities=getattr(provider, "capabilities", Capabilities()),
            make=provider,
            host_checks=getattr(provider, "host_checks"),  # noqa: B009 - the class's
        )

    def replace(self, **changes: Any) -> ProviderSpec:
        return dataclasses.replace(self, **changes)

    def __call__(self, context: BackendContext, **seams: Any) -> DeviceProvider:
        """A provider for `context`: the spec stands where a provider class stood."""
        return self.make(context, **seams)
