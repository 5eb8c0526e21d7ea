"""VolumeService: the one place that decides what happens to a volume.

Docker's protocol, the admin API and the CLI all come through here. The rules:

* Every volume has a lock; operations on one volume serialise, different volumes proceed in
  parallel (backend calls run in worker threads).
* The state a volume is about to enter is committed to the store before the backend acts,
  so `recover()` can finish or undo whatever a crash interrupted.
* Docker's Mount IDs are persisted: the backend attaches on the first and detaches after the
  last; a repeated Mount of a known ID, or an Unmount of an unknown one, changes nothing.
* Get, List and Path answer from memory (a mirror of the store) and never wait on a backend.
* Mount bookkeeping is committed crash-safe but not fsynced (`durable=False`): a power loss
  takes every mount and container with it anyway. A remove fsyncs its intent before the
  backend deletes anything; a create's record is fsynced in the background (see store).
* A cancelled operation ends as a cancellation, never as a user error or a recorded fault;
  the backend call it was waiting for finishes first (see `VolumeRegistry.call`).

This module holds the lifecycle (create, remove, resize; mount and unmount are `mounts`);
the other parts are their own modules, composed here: `registry` (memory, locks, worker
threads), `usage`, `snapshots` (and `schedules`), `backups`, `discovery`, `recovery` and
`events` (the journal `orlop events` reads).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable
from typing import Any

from orlop.backends.base import Backend, Describable, Resizable
from orlop.core.backups import Backups
from orlop.core.boot import BootWait
from orlop.core.context import traced
from orlop.core.discovery import Discovery
from orlop.core.events import EventJournal
from orlop.core.inflight import InFlight
from orlop.core.model import (
    Conflict,
    InvalidOption,
    State,
    Volume,
    rfc3339,
    validate_name,
)
from orlop.core.mounts import Mounts
from orlop.core.reconcile import reconcile_options
from orlop.core.recovery import Recovery
from orlop.core.registry import Driver, VolumeRegistry, ref, user_error
from orlop.core.schedules import SnapshotScheduler
from orlop.core.snapshots import Snapshots
from orlop.core.store import Store
from orlop.core.trash import Trash
from orlop.core.usage import UsageMeter
from orlop.ops.counters import observed

__all__ = ["Driver", "VolumeService"]

log = logging.getLogger(__name__)


class VolumeService:
    def __init__(
        self,
        store: Store,
        drivers: Iterable[Driver],
        workers: int = 32,
        events: EventJournal | None = None,
    ) -> None:
        self.registry = VolumeRegistry(store, drivers, workers, events)
        self.events = self.registry.events  # what happened, for `orlop events`
        self.inflight = InFlight()  # Create and Mount calls in flight, joined by a retry
        self.store = store
        self.drivers = self.registry.drivers
        self.generation = self.registry.generation  # frontends cache their answers on it
        self.usage = UsageMeter(self.registry)
        self.mounts = Mounts(self.registry, self.inflight, self.usage)  # Mount and Unmount
        self.snapshots = Snapshots(self.registry)
        self.backups = Backups(self.registry, self.create)
        self.scheduler = SnapshotScheduler(self.registry, self.snapshots)
        self.discovery = Discovery(self.registry)
        stored = self.registry.load()
        self.trash = Trash(self.registry, stored)  # removed volumes kept a while (`trash`)
        self.recovery = Recovery(self.registry, stored, self.mounts.detach_or_raise)

    @property
    def boot(self) -> BootWait:
        """How Mounts wait for a backend that never answered yet (boot order: the daemon sets
        one; a service on its own does not wait). Held by `mounts`."""
        return self.mounts.boot

    @boot.setter
    def boot(self, boot: BootWait) -> None:
        self.mounts.boot = boot

    def close(self) -> None:
        self.registry.close()
        self.events.close()  # what was emitted is written first

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for operations in flight; True if none is left."""
        return await self.registry.drain(timeout)

    async def recover(self) -> None:
        await self.recovery.run()

    # reads: memory only -----------------------------------------------------------------
    def driver(self, name: str) -> Driver:
        return self.registry.driver(name)

    @observed("get")
    def get(self, driver: str, name: str) -> Volume:
        return self.registry.get(driver, name)

    @observed("list")
    def list(self, driver: str) -> list[Volume]:
        self.driver(driver)
        return list(self.registry.volumes[driver].values())

    def find(self, name: str) -> builtins.list[Volume]:
        """Volumes called `name`, across every driver."""
        return [vols[name] for vols in self.registry.volumes.values() if name in vols]

    @observed("path")
    def path(self, driver: str, name: str) -> str:
        return self.registry.get(driver, name).mountpoint

    def redacted_options(self, volume: Volume) -> dict[str, str]:
        return self.drivers[volume.driver].backend.options.redact(volume.options)

    def backend_facts(self, volume: Volume) -> dict[str, Any]:
        """What the backend says about the volume for Status; from its record, no I/O."""
        backend = self.drivers[volume.driver].backend
        return backend.describe(ref(volume)) if isinstance(backend, Describable) else {}

    def status(self, volume: Volume) -> dict[str, Any]:
        """What every frontend shows as the volume's status (`docker volume inspect`'s
        Status, `orlop volume inspect`); secrets redacted, no I/O."""
        status: dict[str, Any] = {
            "backend": volume.backend,
            "state": volume.state.value,
            "options": self.redacted_options(volume),
            "mounts": volume.mounts,
            "usage": volume.usage.as_dict() if volume.usage else None,
        }
        facts = self.backend_facts(volume)
        if facts:
            status["backend_status"] = facts
        if volume.fault:
            status["fault"] = volume.fault
        return status

    # writes -----------------------------------------------------------------------------
    @observed("create")
    @traced("create")
    async def create(
        self,
        driver_name: str,
        name: str,
        options: dict[str, str],
        task: str | None = None,
        timeout: float | None = None,
    ) -> Volume:
        """Create a volume; the same name with the same (or no) options is a no-op.

        A clone or a restore (from_volume, from_snapshot, from_backup) reports its progress
        under `task`. The same create in flight is joined; the caller waits at most `timeout`
        seconds (see `InFlight`)."""
        driver = self.driver(driver_name)
        validate_name(name)
        backend = driver.backend
        canonical = backend.options.validate(options, driver.defaults)
        backend.validate(name, canonical)
        return await self.inflight.run(
            ("create", driver_name, name, tuple(sorted(options.items()))),
            lambda: self._create(driver, name, options, canonical, task),
            timeout,
            f"creating volume {name}",
        )

    async def _create(
        self,
        driver: Driver,
        name: str,
        options: dict[str, str],
        canonical: dict[str, str],
        task: str | None,
    ) -> Volume:
        driver_name, backend, registry = driver.name, driver.backend, self.registry
        async with registry.lock(driver_name, name):
            existing = registry.volumes[driver_name].get(name)
            self.trash.refuse_name(driver_name, name)
            if existing is not None:
                if options and reconcile_options(existing, options, canonical, backend.options):
                    registry.save(existing)
                return existing
            volume = Volume(
                driver=driver_name,
                name=name,
                backend=backend.kind,
                options=canonical,
                record={},
                created_at=rfc3339(),
                state=State.CREATING,
            )
            # Intent first: recover() removes a half-made volume. Crash-safe, not fsynced
            # here: see store.sync_soon() below.
            self.store.insert(volume, durable=False)
            created = False
            try:
                volume.record = await registry.call_tracked(
                    task, f"create {name}", backend.create, ref(volume)
                )
                created = True
            except Exception as error:
                raise user_error(error, f"creating volume {name}") from error
            finally:
                if not created:  # failed, or cancelled: nothing half-made stays
                    await self._undo_create(driver, volume)
            volume.state = State.READY
            volume.mountpoint = backend.mountpoint(ref(volume))
            # fsynced in the background, while dockerd fsyncs its own record of the volume:
            # Docker's create does not wait on two disks' flushes in a row.
            registry.save(volume, durable=False)
            self.store.sync_soon()
            registry.volumes[driver_name][name] = volume
            log.info("created volume %s (driver %s)", name, driver_name)
            self.events.emit(
                "created",
                f"created volume {name}",
                driver_name,
                name,
                backend=backend.kind,
                options=backend.options.redact(canonical),
            )
            self.usage.refresh_later(volume)
            return volume

    async def _undo_create(self, driver: Driver, volume: Volume) -> None:
        try:
            await self.registry.call(driver.backend.remove, ref(volume))
        except Exception:
            # Keep the CREATING row: recover() will retry the cleanup at the next start.
            log.exception("cleaning up the failed create of %s", volume.name)
            return
        self.store.delete(volume.driver, volume.name)
        # A discovery pass that listed the storage before this undo must not adopt it now.
        self.discovery.removed(volume.driver, volume.name)

    @observed("remove")
    @traced("remove")
    async def remove(self, driver_name: str, name: str) -> None:
        driver = self.driver(driver_name)
        registry = self.registry
        async with registry.lock(driver_name, name):
            volume = self.registry.get(driver_name, name)
            if volume.mount_ids:
                raise Conflict(
                    f"volume {name} is in use by {volume.mounts} mount"
                    f"{'s' if volume.mounts != 1 else ''}: stop the containers using it first"
                )
            if driver.trash > 0:
                self.trash.keep(volume, driver.trash)
                self.discovery.removed(driver_name, name)
                self.events.emit(
                    "trashed",
                    f"removed volume {name} into the trash (storage kept {driver.trash:.0f} s)",
                    driver_name,
                    name,
                    keep_seconds=driver.trash,
                )
                return
            volume.state = State.REMOVING
            registry.save(volume)
            del registry.volumes[driver_name][name]
            # Cancelled meanwhile: the REMOVING row stays, and recover() finishes the removal.
            try:
                await registry.call(driver.backend.remove, ref(volume))
            except Exception as error:
                volume.state = State.READY
                volume.fault = f"remove failed: {error}"
                registry.save(volume)
                registry.volumes[driver_name][name] = volume
                raise user_error(error, f"removing volume {name}") from error
            self.store.delete(driver_name, name, durable=False)  # REMOVING was durable
            self.discovery.removed(driver_name, name)
            log.info("removed volume %s (driver %s)", name, driver_name)
            self.events.emit("removed", f"removed volume {name}", driver_name, name)

    @observed("mount")
    @traced("mount")
    async def mount(
        self, driver_name: str, name: str, mount_id: str, timeout: float | None = None
    ) -> str:
        """Attach on the first mount ID; a known ID changes nothing. Returns the mountpoint.

        The same Mount again while one is in flight joins it; the caller waits at most
        `timeout` seconds (see `InFlight`, and `core.mounts`)."""
        return await self.mounts.mount(driver_name, name, mount_id, timeout)

    async def hold(self, driver_name: str, name: str, holder: str) -> None:
        """One more holder of a volume that is attached already (a CSI target bound from its
        stage): recorded like a mount ID, without asking the backend again; `unmount` drops it."""
        await self.mounts.hold(driver_name, name, holder)

    @observed("unmount")
    @traced("unmount")
    async def unmount(
        self, driver_name: str, name: str, mount_id: str, timeout: float | None = None
    ) -> None:
        """Forget `mount_id`; detach after the last one. An unknown ID changes nothing.
        Joined and timed like `mount`."""
        await self.mounts.unmount(driver_name, name, mount_id, timeout)

    @observed("resize")
    @traced("resize")
    async def resize(self, driver_name: str, name: str, size: int) -> Volume:
        """Grow a volume to `size` bytes, if its backend is Resizable."""
        driver = self.driver(driver_name)
        backend = driver.backend
        if not isinstance(backend, Resizable) or not backend.capabilities.resize:
            able = ", ".join(sorted(n for n, d in self.drivers.items() if _can_resize(d.backend)))
            raise InvalidOption(
                f"driver {driver_name} ({driver.kind}) cannot resize volumes; "
                f"drivers that can: {able or 'none'}"
            )
        async with self.registry.lock(driver_name, name):
            volume = self.registry.get(driver_name, name)
            try:
                volume.record = await self.registry.call(backend.resize, ref(volume), size)
            except Exception as error:
                raise user_error(error, f"resizing volume {name}") from error
            volume.options["size"] = str(size)
            self.registry.save(volume)
            self.events.emit(
                "resized", f"resized volume {name} to {size} bytes", driver_name, name, size=size
            )
        return await self.usage.refresh(driver_name, name)

    # the other parts, as the frontends call them -----------------------------------------
    async def refresh_usage(self, driver_name: str, name: str, timeout: float = 10.0) -> Volume:
        return await self.usage.refresh(driver_name, name, timeout)

    async def measure_all(self, interval: float) -> None:
        await self.usage.refresh_all(interval)

    def snapshot_drivers(self) -> builtins.list[str]:
        return self.snapshots.drivers()

    @observed("snapshot")
    @traced("snapshot")
    async def create_snapshot(
        self, driver_name: str, name: str, snapshot_name: str | None = None
    ) -> dict[str, Any]:
        return await self.snapshots.create(driver_name, name, snapshot_name)

    async def list_snapshots(
        self, driver_name: str, volume: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        return await self.snapshots.list(driver_name, volume)

    @observed("delete_snapshot")
    @traced("delete_snapshot", volume_argument=False)
    async def delete_snapshot(self, driver_name: str, snapshot: str) -> dict[str, Any]:
        return await self.snapshots.delete(driver_name, snapshot)

    async def discover(self, driver_name: str) -> builtins.list[Volume]:
        adopted = await self.discovery.discover(driver_name)
        await self._retry_failed_detaches(driver_name)
        return adopted

    async def _retry_failed_detaches(self, driver_name: str) -> None:
        """A detach that failed after the last Unmount left the storage attached here with
        nothing using it, and Docker never repeats that Unmount: every discovery pass tries
        the detach again (a global volume held here is refused to every other host)."""
        driver, registry = self.driver(driver_name), self.registry
        for volume in list(registry.volumes[driver_name].values()):
            if volume.state != State.DETACHING or volume.mount_ids:
                continue
            async with registry.lock(driver_name, volume.name):
                if volume.state == State.DETACHING and not volume.mount_ids:
                    log.info("retrying the failed detach of %s", volume.name)
                    await self.mounts.settle_detached(driver, volume)


def _can_resize(backend: Backend) -> bool:
    return backend.capabilities.resize and isinstance(backend, Resizable)
