"""Capacity: how many bytes a driver can still give to new volumes, where its storage can say.

A backend that can tell implements `available_capacity(options)` (the `CapacityReporting`
protocol): the free bytes of the filesystem holding a directory's or a loop file's volumes.
It answers None where the figure would not be true (a `type` mount of other storage; a
cloud, whose limits are quotas and not free space). CSI's GetCapacity asks through here,
with the request's parameters validated as a CreateVolume's are (same messages).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from orlop.core.registry import VolumeRegistry


@runtime_checkable
class CapacityReporting(Protocol):
    def available_capacity(self, options: dict[str, str]) -> int | None:
        """Bytes free for new volumes with `options` (canonical), None if not known."""


def reports_capacity(registry: VolumeRegistry, driver_name: str) -> bool:
    """Whether `driver_name` can say its capacity (for its default options): decided once,
    at start, so that a capability is advertised only where it is true."""
    driver = registry.driver(driver_name)
    backend = driver.backend
    if not isinstance(backend, CapacityReporting):
        return False
    return backend.available_capacity(dict(driver.defaults)) is not None


async def available_capacity(
    registry: VolumeRegistry, driver_name: str, parameters: dict[str, str]
) -> int | None:
    """Bytes free for a new volume of `driver_name` with `parameters` (Orlop's options,
    validated over the driver's defaults); None if the backend cannot tell."""
    driver = registry.driver(driver_name)
    backend = driver.backend
    canonical = backend.options.validate(parameters, driver.defaults)
    if not isinstance(backend, CapacityReporting):
        return None
    return await registry.call(backend.available_capacity, canonical)
