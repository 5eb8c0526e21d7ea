"""Snapshots: an optional capability (`Snapshottable`) a backend may offer; restoring one
into its volume is another (`Restorable`)."""

from __future__ import annotations

import builtins
import logging
import time
from typing import Any, TypeGuard

from orlop.backends.base import Backend, Restorable, Snapshottable
from orlop.core.model import Conflict, InvalidOption, NotFound, State, validate_name
from orlop.core.registry import VolumeRegistry, ref, user_error
from orlop.core.schedule import PERIODS

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
        self,
        driver_name: str,
        name: str,
        snapshot_name: str | None = None,
        task: str | None = None,
    ) -> dict[str, Any]:
        """Snapshot volume `name`; the snapshot's name defaults to <volume>-<UTC time>."""
        backend = self._backend(driver_name)
        snapshot_name = snapshot_name or f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        validate_name(snapshot_name, "snapshot name")
        async with self.registry.lock(driver_name, name):
            volume = self.registry.get(driver_name, name)
            try:
                made = await self.registry.call_tracked(
                    task, f"snapshot of {name}", backend.create_snapshot, ref(volume), snapshot_name
                )
            except Exception as error:
                raise user_error(error, f"snapshotting volume {name}") from error
        log.info("snapshot %s of volume %s (driver %s)", snapshot_name, name, driver_name)
        self.registry.events.emit(
            "snapshot_taken",
            f"took snapshot {snapshot_name} of volume {name}",
            driver_name,
            name,
            snapshot=snapshot_name,
        )
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
        return [
            {**snapshot, "driver": driver_name, "schedule": schedule_of(snapshot)}
            for snapshot in found
        ]

    async def restore(
        self, driver_name: str, snapshot: str, task: str | None = None
    ) -> dict[str, Any]:
        """Put snapshot `snapshot` back into its volume, which no container may be using."""
        driver = self.registry.driver(driver_name)
        backend = self._backend(driver_name)
        if not (driver.backend.capabilities.restore and isinstance(backend, Restorable)):
            raise InvalidOption(
                f"driver {driver_name} ({driver.kind}) cannot restore snapshots in place: "
                "create a new volume from the snapshot instead (--opt from_snapshot=NAME)"
            )
        validate_name(snapshot, "snapshot name")
        found = [s for s in await self.list(driver_name) if snapshot in (s["name"], s["id"])]
        if not found:
            raise NotFound(
                f"snapshot {snapshot} does not exist in driver {driver_name}: "
                "`orlop snapshot ls` lists the snapshots"
            )
        name = found[0]["volume"]
        async with self.registry.lock(driver_name, name):
            try:
                volume = self.registry.get(driver_name, name)
            except NotFound:
                raise NotFound(
                    f"volume {name} of snapshot {snapshot} no longer exists: make a new volume "
                    f"from the snapshot with --opt from_snapshot={snapshot}"
                ) from None
            if volume.mount_ids or volume.state != State.READY:
                raise Conflict(
                    f"volume {name} is mounted ({volume.mounts} container mount"
                    f"{'s' if volume.mounts != 1 else ''}): restore replaces its data, so stop "
                    "the containers using it first (or clone the snapshot: --opt "
                    f"from_snapshot={snapshot})"
                )
            try:
                restored = await self.registry.call_tracked(
                    task, f"restore of {name}", backend.restore_snapshot, ref(volume), snapshot
                )
            except Exception as error:
                raise user_error(error, f"restoring snapshot {snapshot}") from error
            volume.usage = None
            self.registry.save(volume)
        log.info("restored snapshot %s into volume %s (driver %s)", snapshot, name, driver_name)
        self.registry.events.emit(
            "snapshot_restored",
            f"restored snapshot {snapshot} into volume {name}",
            driver_name,
            name,
            snapshot=snapshot,
        )
        return {**restored, "driver": driver_name, "restored_into": name}

    async def delete(self, driver_name: str, snapshot: str) -> dict[str, Any]:
        backend = self._backend(driver_name)
        try:
            deleted = await self.registry.call(backend.delete_snapshot, snapshot)
        except Exception as error:
            raise user_error(error, f"deleting snapshot {snapshot}") from error
        log.info("deleted snapshot %s (driver %s)", snapshot, driver_name)
        self.registry.events.emit(
            "snapshot_deleted",
            f"deleted snapshot {snapshot}",
            driver_name,
            str(deleted.get("volume") or ""),
            snapshot=snapshot,
        )
        return {**deleted, "driver": driver_name}


def schedule_of(snapshot: dict[str, Any]) -> str:
    """The schedule period that made a snapshot, from its name (<volume>-<period>-<slot>)."""
    prefix = f"{snapshot.get('volume', '')}-"
    name = str(snapshot.get("name", ""))
    if not name.startswith(prefix):
        return ""
    period, _, slot_name = name[len(prefix) :].partition("-")
    return period if period in PERIODS and slot_name.isalnum() else ""


def _can_snapshot(backend: Backend) -> TypeGuard[Snapshottable]:
    return backend.capabilities.snapshot and isinstance(backend, Snapshottable)
