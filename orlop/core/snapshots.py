"""Snapshots: an optional capability (`Snapshottable`) a backend may offer."""

from __future__ import annotations

import builtins
import logging
import time
from typing import Any, TypeGuard

from orlop.backends.base import Backend, Snapshottable
from orlop.core.model import InvalidOption, validate_name
from orlop.core.registry import VolumeRegistry, ref, user_error

log = logging.getLogger(__name__)


class Snapshots:
    def __init__(self, registry: VolumeRegistry) -> None:
        self.registry = registry

    def drivers(self) -> builtins.list[str]:
        """The drivers whose backend can take snapshots."""
        return sorted(
            name for name, driver in self.registry.drivers.items() if _can_snapshot(driver.backend)
        )

    def _backend(self, driver_name: str) -> Snapshottable:
        driver = self.registry.driver(driver_name)
        backend = driver.backend
        if not _can_snapshot(backend):
            able = ", ".join(self.drivers()) or "none"
            raise InvalidOption(
                f"driver {driver_name} ({driver.kind}) cannot take snapshots; "
                f"drivers that can: {able}"
            )
        return backend

    async def create(
        self, driver_name: str, name: str, snapshot_name: str | None = None
    ) -> dict[str, Any]:
        """Snapshot volume `name`; the snapshot's name defaults to <volume>-<UTC time>."""
        backend = self._backend(driver_name)
        snapshot_name = snapshot_name or f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        validate_name(snapshot_name, "snapshot name")
        async with self.registry.lock(driver_name, name):
            volume = self.registry.get(driver_name, name)
            try:
                made = await self.registry.call(backend.create_snapshot, ref(volume), snapshot_name)
            except Exception as error:
                raise user_error(error, f"snapshotting volume {name}") from error
        log.info("snapshot %s of volume %s (driver %s)", snapshot_name, name, driver_name)
        return {**made, "driver": driver_name}

    async def list(
        self, driver_name: str, volume: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        backend = self._backend(driver_name)
        if volume is not None:
            validate_name(volume)
        try:
            found = await self.registry.call(backend.list_snapshots, volume)
        except Exception as error:
            raise user_error(error, "listing snapshots") from error
        return [{**snapshot, "driver": driver_name} for snapshot in found]

    async def delete(self, driver_name: str, snapshot: str) -> dict[str, Any]:
        backend = self._backend(driver_name)
        try:
            deleted = await self.registry.call(backend.delete_snapshot, snapshot)
        except Exception as error:
            raise user_error(error, f"deleting snapshot {snapshot}") from error
        log.info("deleted snapshot %s (driver %s)", snapshot, driver_name)
        return {**deleted, "driver": driver_name}


def _can_snapshot(backend: Backend) -> TypeGuard[Snapshottable]:
    return backend.capabilities.snapshot and isinstance(backend, Snapshottable)
