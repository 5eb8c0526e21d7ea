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
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from orlop.backends.base import Backend, VolumeRef
from orlop.core.model import (
    BackendError,
    Conflict,
    InvalidOption,
    NotFound,
    OrlopError,
    State,
    Volume,
    validate_name,
)
from orlop.core.store import Store, now_rfc3339

log = logging.getLogger(__name__)
T = TypeVar("T")

USAGE_SETTLE_SECONDS = 1.0  # quiet time before usage is measured after a create or unmount

# States in which a volume exists for users; CREATING and REMOVING ones are being decided.
_VISIBLE = {State.READY, State.ATTACHING, State.ATTACHED, State.DETACHING}


@dataclass(frozen=True, slots=True)
class Driver:
    """One driver name Docker sees: a configured backend instance."""

    name: str
    backend: Backend
    defaults: dict[str, str]

    @property
    def kind(self) -> str:
        return self.backend.kind


class VolumeService:
    def __init__(self, store: Store, drivers: Iterable[Driver], workers: int = 32) -> None:
        self.store = store
        self.drivers = {driver.name: driver for driver in drivers}
        self._volumes: dict[str, dict[str, Volume]] = {name: {} for name in self.drivers}
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="orlop-backend")
        # Bumped on every change a driver's List would show; frontends cache on it.
        self.generation: dict[str, int] = dict.fromkeys(self.drivers, 0)
        # When each volume was last removed here, so discovery does not bring it back.
        self._removed_at: dict[tuple[str, str], float] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._active = 0  # operations holding (or waiting for) a volume lock
        self._idle = asyncio.Event()
        self._load()

    def _load(self) -> None:
        self._pending: list[Volume] = []
        for volume in self.store.load():
            driver = self.drivers.get(volume.driver)
            if driver is None:
                log.warning(
                    "volume %s belongs to driver %s, which is not configured: kept, not served",
                    volume.name,
                    volume.driver,
                )
                continue
            volume.mountpoint = driver.backend.mountpoint(_ref(volume))
            if volume.state in _VISIBLE:
                self._volumes[volume.driver][volume.name] = volume
            self._pending.append(volume)

    def close(self) -> None:
        for task in self._background:
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # reads: memory only -----------------------------------------------------------------
    def driver(self, name: str) -> Driver:
        try:
            return self.drivers[name]
        except KeyError:
            known = ", ".join(sorted(self.drivers)) or "none"
            raise NotFound(f"no driver named {name!r}: configured drivers are {known}") from None

    def get(self, driver: str, name: str) -> Volume:
        try:
            return self._volumes[driver][name]
        except KeyError:
            self.driver(driver)
            validate_name(name)
            raise NotFound(f"volume {name} not found (driver {driver})") from None

    def list(self, driver: str) -> list[Volume]:
        self.driver(driver)
        return list(self._volumes[driver].values())

    def find(self, name: str) -> builtins.list[Volume]:
        """Volumes called `name`, across every driver."""
        return [vols[name] for vols in self._volumes.values() if name in vols]

    def path(self, driver: str, name: str) -> str:
        return self.get(driver, name).mountpoint

    def redacted_options(self, volume: Volume) -> dict[str, str]:
        return self.drivers[volume.driver].backend.options.redact(volume.options)

    def backend_facts(self, volume: Volume) -> dict[str, Any]:
        """What the backend says about the volume for Status; from its record, no I/O."""
        describe = getattr(self.drivers[volume.driver].backend, "describe", None)
        return describe(_ref(volume)) if describe is not None else {}

    # writes -----------------------------------------------------------------------------
    async def create(self, driver_name: str, name: str, options: dict[str, str]) -> Volume:
        """Create a volume; the same name with the same (or no) options is a no-op."""
        driver = self.driver(driver_name)
        validate_name(name)
        backend = driver.backend
        canonical = backend.options.validate(options, driver.defaults)
        backend.validate(name, canonical)
        async with self._lock(driver_name, name):
            existing = self._volumes[driver_name].get(name)
            if existing is not None:
                if options:
                    self._reconcile_options(existing, options, canonical, backend)
                return existing
            volume = Volume(
                driver=driver_name,
                name=name,
                backend=backend.kind,
                options=canonical,
                record={},
                created_at=now_rfc3339(),
                state=State.CREATING,
            )
            # Intent first: recover() removes a half-made volume. Crash-safe, not fsynced
            # here: see store.sync_soon() below.
            self.store.insert(volume, durable=False)
            ref = _ref(volume)
            try:
                volume.record = await self._call(backend.create, ref)
            except BaseException as error:
                await self._undo_create(driver, volume)
                raise _as_user_error(error, f"creating volume {name}") from error
            volume.state = State.READY
            volume.mountpoint = backend.mountpoint(_ref(volume))
            # fsynced in the background, while dockerd fsyncs its own record of the volume:
            # Docker's create does not wait on two disks' flushes in a row.
            self._save(volume, durable=False)
            self.store.sync_soon()
            self._volumes[driver_name][name] = volume
            log.info("created volume %s (driver %s)", name, driver_name)
            self._measure_later(volume)
            return volume

    def _reconcile_options(
        self, existing: Volume, asked: dict[str, str], canonical: dict[str, str], backend: Backend
    ) -> None:
        """A Create of an existing volume: the options asked that say what the volume is must
        match it (those not asked do not matter: another host, or an older config, may have
        made it); those that say how this host uses it (preempt) are taken as asked."""
        spec = backend.options.options
        identity = [key for key in asked if spec[key].identity]
        if any(existing.options.get(key) != canonical[key] for key in identity):
            old = {key: existing.options[key] for key in identity if key in existing.options}
            new = {key: canonical[key] for key in identity}
            raise Conflict(_difference(existing.name, old, new, backend))
        behaviour = {
            key: canonical[key]
            for key in asked
            if not spec[key].identity and existing.options.get(key) != canonical[key]
        }
        if behaviour:
            existing.options.update(behaviour)
            self._save(existing)

    async def _undo_create(self, driver: Driver, volume: Volume) -> None:
        try:
            await self._call(driver.backend.remove, _ref(volume))
        except Exception:
            # Keep the CREATING row: recover() will retry the cleanup at the next start.
            log.exception("cleaning up the failed create of %s", volume.name)
            return
        self.store.delete(volume.driver, volume.name)

    async def remove(self, driver_name: str, name: str) -> None:
        driver = self.driver(driver_name)
        async with self._lock(driver_name, name):
            volume = self.get(driver_name, name)
            if volume.mount_ids:
                raise Conflict(
                    f"volume {name} is in use by {volume.mounts} mount"
                    f"{'s' if volume.mounts != 1 else ''}: stop the containers using it first"
                )
            volume.state = State.REMOVING
            self._save(volume)
            del self._volumes[driver_name][name]
            try:
                await self._call(driver.backend.remove, _ref(volume))
            except BaseException as error:
                volume.state = State.READY
                volume.fault = f"remove failed: {error}"
                self._save(volume)
                self._volumes[driver_name][name] = volume
                raise _as_user_error(error, f"removing volume {name}") from error
            self.store.delete(driver_name, name, durable=False)  # REMOVING was durable
            self._removed_at[(driver_name, name)] = time.monotonic()
            log.info("removed volume %s (driver %s)", name, driver_name)

    async def mount(self, driver_name: str, name: str, mount_id: str) -> str:
        """Attach on the first mount ID; a known ID changes nothing. Returns the mountpoint."""
        driver = self.driver(driver_name)
        async with self._lock(driver_name, name):
            volume = self.get(driver_name, name)
            if mount_id in volume.mount_ids:
                return volume.mountpoint
            first = not volume.mount_ids
            if first:
                volume.state = State.ATTACHING
                self._save(volume, durable=False)
            try:
                # Also on later IDs: attach is idempotent, and repairs a dead network mount.
                path = await self._call(driver.backend.attach, _ref(volume))
            except BaseException as error:
                if first:
                    await self._settle_detached(driver, volume)
                raise _as_user_error(error, f"mounting volume {name}") from error
            volume.state = State.ATTACHED
            volume.fault = ""
            volume.mountpoint = path
            volume.mount_ids.add(mount_id)
            self._save(volume, add_mount=mount_id, durable=False)
            return path

    async def unmount(self, driver_name: str, name: str, mount_id: str) -> None:
        """Forget `mount_id`; detach after the last one. An unknown ID changes nothing."""
        driver = self.driver(driver_name)
        async with self._lock(driver_name, name):
            volume = self.get(driver_name, name)
            if mount_id not in volume.mount_ids:
                return
            volume.mount_ids.discard(mount_id)
            if volume.mount_ids:
                self._save(volume, drop_mount=mount_id, durable=False)
                return
            volume.state = State.DETACHING
            self._save(volume, drop_mount=mount_id, durable=False)
            await self._settle_detached(driver, volume, raise_errors=True)
        self._measure_later(volume)

    async def _settle_detached(
        self, driver: Driver, volume: Volume, raise_errors: bool = False
    ) -> None:
        """Detach and record READY; on failure keep the fault for Status and recover()."""
        try:
            await self._call(driver.backend.detach, _ref(volume))
        except BaseException as error:
            volume.fault = f"detach failed: {error}"
            self._save(volume, durable=False)
            log.error("detaching %s: %s", volume.name, error)
            if raise_errors:
                raise _as_user_error(error, f"unmounting volume {volume.name}") from error
            return
        volume.state = State.READY
        volume.fault = ""
        self._save(volume, durable=False)

    async def refresh_usage(self, driver_name: str, name: str, timeout: float = 10.0) -> Volume:
        """Ask the backend for size/used/free now, and remember it for Status."""
        driver = self.driver(driver_name)
        async with self._lock(driver_name, name):
            volume = self.get(driver_name, name)
            try:
                usage = await asyncio.wait_for(
                    self._call(driver.backend.usage, _ref(volume)), timeout
                )
            except (TimeoutError, OrlopError, OSError) as error:
                # Usage is a hint for Status, not a fault of the volume: keep the last value.
                log.debug("usage of %s: %s", name, error or "timed out")
                return volume
            if usage is not None and usage != volume.usage:  # None: unknown now, keep the last
                volume.usage = usage
                self.store.set_usage(volume)
                self._changed(driver_name)
            return volume

    def _measure_later(self, volume: Volume) -> None:
        """Refresh usage soon, in the background, once the caller has released the lock.

        After a short pause: Docker's calls come in bursts (create, Get, Mount; Unmount, Get,
        Remove), and a measurement in the middle of one holds the volume's lock and a worker
        thread while the next call waits."""

        async def measure() -> None:
            await asyncio.sleep(USAGE_SETTLE_SECONDS)
            with contextlib.suppress(OrlopError):  # removed meanwhile
                await self.refresh_usage(volume.driver, volume.name)

        task = asyncio.ensure_future(measure())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def measure_all(self, interval: float) -> None:
        """Refresh every volume's usage for Status, one at a time, every `interval` seconds."""
        while True:
            await asyncio.sleep(interval)
            for driver, volumes in self._volumes.items():
                for name in list(volumes):
                    with contextlib.suppress(OrlopError):
                        await self.refresh_usage(driver, name)

    async def resize(self, driver_name: str, name: str, size: int) -> Volume:
        driver = self.driver(driver_name)
        resize = getattr(driver.backend, "resize", None)
        if resize is None or not driver.backend.capabilities.resize:
            raise InvalidOption(f"driver {driver_name} ({driver.kind}) cannot resize volumes")
        async with self._lock(driver_name, name):
            volume = self.get(driver_name, name)
            volume.record = await self._call(resize, _ref(volume), size)
            volume.options["size"] = str(size)
            self._save(volume)
        return await self.refresh_usage(driver_name, name)

    # snapshots: an optional capability ---------------------------------------------------
    def snapshot_drivers(self) -> builtins.list[str]:
        """The drivers whose backend can take snapshots."""
        return sorted(n for n, d in self.drivers.items() if d.backend.capabilities.snapshot)

    def _snapshotter(self, driver_name: str) -> Any:
        driver = self.driver(driver_name)
        if not driver.backend.capabilities.snapshot:
            able = ", ".join(self.snapshot_drivers()) or "none"
            raise InvalidOption(
                f"driver {driver_name} ({driver.kind}) cannot take snapshots; "
                f"drivers that can: {able}"
            )
        return driver.backend

    async def create_snapshot(
        self, driver_name: str, name: str, snapshot_name: str | None = None
    ) -> dict[str, Any]:
        """Snapshot volume `name`; the snapshot's name defaults to <volume>-<UTC time>."""
        backend = self._snapshotter(driver_name)
        snapshot_name = snapshot_name or f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        validate_name(snapshot_name, "snapshot name")
        async with self._lock(driver_name, name):
            volume = self.get(driver_name, name)
            try:
                made = await self._call(backend.create_snapshot, _ref(volume), snapshot_name)
            except BaseException as error:
                raise _as_user_error(error, f"snapshotting volume {name}") from error
        log.info("snapshot %s of volume %s (driver %s)", snapshot_name, name, driver_name)
        return {**made, "driver": driver_name}

    async def list_snapshots(
        self, driver_name: str, volume: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        backend = self._snapshotter(driver_name)
        if volume is not None:
            validate_name(volume)
        try:
            found = await self._call(backend.list_snapshots, volume)
        except BaseException as error:
            raise _as_user_error(error, "listing snapshots") from error
        return [{**snapshot, "driver": driver_name} for snapshot in found]

    async def delete_snapshot(self, driver_name: str, snapshot: str) -> dict[str, Any]:
        backend = self._snapshotter(driver_name)
        try:
            deleted = await self._call(backend.delete_snapshot, snapshot)
        except BaseException as error:
            raise _as_user_error(error, f"deleting snapshot {snapshot}") from error
        log.info("deleted snapshot %s (driver %s)", snapshot, driver_name)
        return {**deleted, "driver": driver_name}

    # discovery: volumes other hosts made on shared storage --------------------------------
    async def discover(self, driver_name: str) -> builtins.list[Volume]:
        """Take in the volumes a Discoverable backend knows and this host's store does not."""
        driver = self.driver(driver_name)
        list_volumes = getattr(driver.backend, "list_volumes", None)
        if list_volumes is None or driver.backend.capabilities.scope != "global":
            return []
        adopted = []
        started = time.monotonic()
        for name, options, record in await self._call(list_volumes):
            try:
                validate_name(name)
            except OrlopError:
                log.warning("driver %s: skipping volume with invalid name %r", driver_name, name)
                continue
            async with self._lock(driver_name, name):
                removed = self._removed_at.get((driver_name, name), -1.0)
                if name in self._volumes[driver_name] or removed >= started:
                    continue  # known here, or removed here while the backend was listing
                volume = Volume(
                    driver=driver_name,
                    name=name,
                    backend=driver.kind,
                    options=options,
                    record=record,
                    created_at=record.get("created_at") or now_rfc3339(),
                    state=State.READY,
                )
                volume.mountpoint = driver.backend.mountpoint(_ref(volume))
                try:
                    self.store.insert(volume)
                except Exception as error:  # a row in CREATING/REMOVING: recover() owns it
                    log.info("not discovering %s: %s", name, error)
                    continue
                self._volumes[driver_name][name] = volume
                adopted.append(volume)
                log.info("discovered volume %s (driver %s)", name, driver_name)
        if adopted:
            self._changed(driver_name)
        return adopted

    # crash recovery ---------------------------------------------------------------------
    async def recover(self) -> None:
        """Finish or undo what a crash interrupted; make mounts match the mount IDs."""
        from orlop.host.mounts import mounted_paths

        mounted = await asyncio.get_running_loop().run_in_executor(self._executor, mounted_paths)
        pending, self._pending = self._pending, []
        await asyncio.gather(*(self._recover_one(v, mounted) for v in pending))

    async def _recover_one(self, stored: Volume, mounted: set[str]) -> None:
        driver = self.drivers[stored.driver]
        async with self._lock(stored.driver, stored.name):
            volume = self._volumes[stored.driver].get(stored.name, stored)
            try:
                await self._reconcile(driver, volume, mounted)
            except Exception as error:
                log.error("recovering volume %s: %s", volume.name, error)
                volume.fault = f"recovery failed: {error}"
                self._save(volume)

    async def _reconcile(self, driver: Driver, volume: Volume, mounted: set[str]) -> None:
        backend, ref = driver.backend, _ref(volume)
        if volume.state in (State.CREATING, State.REMOVING):
            log.info("finishing interrupted %s of %s", volume.state.value, volume.name)
            await self._call(backend.remove, ref)
            self.store.delete(volume.driver, volume.name)
            return
        attached = backend.is_attached(ref, mounted)
        if volume.mount_ids:
            if not attached or volume.state != State.ATTACHED:
                log.info("re-attaching %s for %d mount(s)", volume.name, volume.mounts)
                volume.mountpoint = await self._call(backend.attach, ref)
            volume.state = State.ATTACHED
            volume.fault = ""
            self._save(volume)
        elif attached or volume.state != State.READY:
            log.info("detaching %s: no container holds it", volume.name)
            await self._settle_detached(driver, volume, raise_errors=True)

    # helpers ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lock(self, driver: str, name: str) -> AsyncIterator[None]:
        """Hold the volume's lock; counted, so that `drain()` can wait for operations."""
        key = (driver, name)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._active += 1
        try:
            async with lock:
                yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for operations in flight; True if none is left."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._active:
            self._idle.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), remaining)
        return True

    def _save(
        self,
        volume: Volume,
        *,
        add_mount: str | None = None,
        drop_mount: str | None = None,
        durable: bool = True,
    ) -> None:
        """Record the volume's state in the store, and tell the frontends' caches.

        Every change Get, List or Path could show goes through here (or `_changed`), so a
        frontend may cache its answers for as long as the driver's generation stands."""
        self.store.update(volume, add_mount=add_mount, drop_mount=drop_mount, durable=durable)
        self._changed(volume.driver)

    def _changed(self, driver: str) -> None:
        self.generation[driver] += 1

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        # A backend may say that this call is a few non-blocking syscalls (backends.base.Quick):
        # then it runs here, sparing two thread switches.
        quick = getattr(getattr(function, "__self__", None), "quick", None)
        if quick is not None and args and quick(function.__name__, args[0]):
            return function(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)


def _ref(volume: Volume) -> VolumeRef:
    return VolumeRef(volume.name, volume.options, volume.record)


def _as_user_error(error: BaseException, doing: str) -> OrlopError:
    if isinstance(error, OrlopError):
        return error
    return BackendError(f"{doing}: {error}")


def _difference(
    name: str, existing: dict[str, str], requested: dict[str, str], backend: Backend
) -> str:
    shown_old = backend.options.redact(existing)
    shown_new = backend.options.redact(requested)
    changed = sorted(
        key for key in set(existing) | set(requested) if existing.get(key) != requested.get(key)
    )
    details = ", ".join(
        f"{key}: {shown_old.get(key, '(unset)')} → {shown_new.get(key, '(unset)')}"
        for key in changed
    )
    return (
        f"volume {name} already exists with different options ({details}); "
        "remove it first or create it with the same options"
    )
