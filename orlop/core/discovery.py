"""Discovery: take in volumes other hosts made on shared storage (`Discoverable` backends),
and forget those other hosts deleted (`Vanishing` backends: the storage is gone)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TypeGuard

from orlop.backends.base import Backend, Discoverable, Exclusive, Vanishing
from orlop.core.model import OrlopError, State, Volume, VolumeLost, rfc3339, validate_name
from orlop.core.registry import VolumeRegistry, forget_lost_mounts, ref

log = logging.getLogger(__name__)


class Discovery:
    def __init__(self, registry: VolumeRegistry) -> None:
        self.registry = registry
        # When each volume was last removed here, so discovery does not bring it back.
        self._removed_at: dict[tuple[str, str], float] = {}
        self._first_pass: dict[str, asyncio.Event] = {}  # driver → set once a pass ended

    def settled(self, driver_name: str) -> bool:
        """Whether List and Get can answer for the driver: it has nothing to discover, or
        its first discovery pass since start has ended (done or failed)."""
        return self._first_pass_event(driver_name).is_set()

    def _first_pass_event(self, driver_name: str) -> asyncio.Event:
        """Made once per driver (List asks on every call), already set for a driver that has
        nothing to discover."""
        event = self._first_pass.get(driver_name)
        if event is None:
            event = self._first_pass[driver_name] = asyncio.Event()
            if driver_name not in self.intervals():
                event.set()
        return event

    async def first_pass(self, driver_name: str, timeout: float) -> None:
        """Wait for the driver's first discovery pass, at most `timeout` seconds: right after
        start, a List must not miss volumes other hosts made (an unreachable storage must not
        hold it longer either)."""
        if self.settled(driver_name):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_pass_event(driver_name).wait(), timeout)

    def intervals(self) -> dict[str, float]:
        """Seconds between discovery rounds, for each driver that can discover volumes."""
        return {
            name: float(driver.backend.discover_interval)
            for name, driver in self.registry.drivers.items()
            if _can_discover(driver.backend)
        }

    def removed(self, driver_name: str, name: str) -> None:
        """Note a volume removed here: a listing begun before the removal must not adopt it."""
        self._removed_at[(driver_name, name)] = time.monotonic()

    async def discover(self, driver_name: str) -> list[Volume]:
        """Take in the volumes a Discoverable backend knows and this host's store does not."""
        try:
            return await self._discover(driver_name)
        finally:
            self._first_pass_event(driver_name).set()

    async def _discover(self, driver_name: str) -> list[Volume]:
        registry = self.registry
        driver = registry.driver(driver_name)
        backend = driver.backend
        if not _can_discover(backend):
            return []
        adopted = []
        started = time.monotonic()
        listed = await registry.call(backend.list_volumes)
        for name, options, record in listed:
            try:
                validate_name(name)
            except OrlopError:
                log.warning("driver %s: skipping volume with invalid name %r", driver_name, name)
                continue
            async with registry.lock(driver_name, name):
                removed = self._removed_at.get((driver_name, name), -1.0)
                if name in registry.volumes[driver_name] or removed >= started:
                    continue  # known here, or removed here while the backend was listing
                if name in registry.trashed.get(driver_name, ()):
                    continue  # in this host's trash: its storage is still listed
                volume = Volume(
                    driver=driver_name,
                    name=name,
                    backend=driver.kind,
                    options=options,
                    record=record,
                    created_at=record.get("created_at") or rfc3339(),
                    state=State.READY,
                )
                volume.mountpoint = driver.backend.mountpoint(ref(volume))
                try:
                    registry.store.insert(volume)
                except Exception as error:  # a row in CREATING/REMOVING: recover() owns it
                    log.info("not discovering %s: %s", name, error)
                    continue
                registry.volumes[driver_name][name] = volume
                adopted.append(volume)
                log.info("discovered volume %s (driver %s)", name, driver_name)
                registry.events.emit(
                    "adopted", f"discovered volume {name} on the storage", driver_name, name
                )
        if adopted:
            registry.changed(driver_name)
        if isinstance(backend, Vanishing):
            await self._forget_vanished(driver_name, backend, {name for name, _, _ in listed})
        if isinstance(backend, Exclusive):
            await self._release_lost(driver_name, backend)
        return adopted

    async def _forget_vanished(
        self, driver_name: str, backend: Vanishing, listed: set[str]
    ) -> None:
        """Forget volumes the listing no longer shows and whose storage is gone: another
        host (a CSI controller's DeleteVolume) deleted them, and List must not show them.
        Only idle READY volumes, each confirmed by the backend's own read."""
        registry = self.registry
        forgotten = []
        for name, volume in list(registry.volumes[driver_name].items()):
            if name in listed or volume.mount_ids or volume.state != State.READY:
                continue
            async with registry.lock(driver_name, name):
                now = registry.volumes[driver_name].get(name)
                if now is not volume or volume.mount_ids or volume.state != State.READY:
                    continue
                try:
                    gone = await registry.call(backend.vanished, ref(volume))
                except OrlopError as error:
                    log.warning(
                        "driver %s: cannot tell whether %s is gone: %s", driver_name, name, error
                    )
                    continue
                if not gone:
                    continue
                registry.store.delete(driver_name, name, durable=False)
                del registry.volumes[driver_name][name]
                forgotten.append(name)
                log.info(
                    "volume %s (driver %s) was deleted elsewhere: its storage is gone; "
                    "forgotten here",
                    name,
                    driver_name,
                )
        if forgotten:
            registry.changed(driver_name)

    async def _release_lost(self, driver_name: str, backend: Exclusive) -> None:
        """Volumes mounted here whose storage the listing shows held by another host (taken
        with preempt=true while this host still had it): drop their mounts here, so Status
        never shows two hosts holding one disk for longer than one discovery interval."""
        registry = self.registry
        for volume in list(registry.volumes[driver_name].values()):
            if not volume.mount_ids:
                continue
            async with registry.lock(driver_name, volume.name):
                if not volume.mount_ids:
                    continue
                holder = await registry.call(backend.release_if_lost, ref(volume))
                if holder is not None:
                    lost = VolumeLost(
                        f"volume {volume.name} was taken over by {holder} while mounted "
                        "here; its mount here was dropped"
                    )
                    forget_lost_mounts(registry, volume, lost)


def _can_discover(backend: Backend) -> TypeGuard[Discoverable]:
    """Only a global backend's storage can hold volumes other hosts made."""
    return backend.capabilities.scope == "global" and isinstance(backend, Discoverable)
