"""The volumes a daemon serves: an in-memory mirror of the store, one lock per volume, and the
worker threads backend calls run in.

Every part of the service (lifecycle, usage, snapshots, discovery, recovery) works through one
`VolumeRegistry`, so there is one place that knows how a change is recorded (`save`), how a
volume is locked (`lock`) and how a backend is called (`call`).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from orlop.backends.base import Backend, Closable, Quick, VolumeRef
from orlop.core.events import EventJournal
from orlop.core.model import (
    BackendError,
    NotFound,
    OrlopError,
    State,
    Volume,
    VolumeLost,
    validate_name,
)
from orlop.core.progress import ProgressBoard, reporting
from orlop.core.store import Store
from orlop.ops.counters import NOTICE_LISTENER

log = logging.getLogger(__name__)
T = TypeVar("T")

# States in which a volume exists for users; CREATING and REMOVING ones are being decided.
VISIBLE = {State.READY, State.ATTACHING, State.ATTACHED, State.DETACHING}


@dataclass(frozen=True, slots=True)
class Driver:
    """One driver name Docker sees: a configured backend instance."""

    name: str
    backend: Backend
    defaults: dict[str, str]
    trash: float = 0.0  # seconds a removed volume's storage is kept (core.trash); 0: off

    @property
    def kind(self) -> str:
        return self.backend.kind


class VolumeRegistry:
    def __init__(
        self,
        store: Store,
        drivers: Iterable[Driver],
        workers: int = 32,
        events: EventJournal | None = None,
    ) -> None:
        self.store = store
        self.events = events if events is not None else EventJournal()  # memory only
        self.drivers = {driver.name: driver for driver in drivers}
        self.volumes: dict[str, dict[str, Volume]] = {name: {} for name in self.drivers}
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="orlop-backend")
        # Bumped on every change a driver's List would show; frontends cache on it.
        self.generation: dict[str, int] = dict.fromkeys(self.drivers, 0)
        self.background: set[asyncio.Future[None]] = set()
        self._active = 0  # operations holding (or waiting for) a volume lock
        self._idle = asyncio.Event()
        self.progress = ProgressBoard()  # long operations' bytes, for the CLI's bars
        self.trashed: dict[str, set[str]] = {}  # driver → names in the trash (core.trash)

    def load(self) -> builtins.list[Volume]:
        """Fill memory from the store; return every stored volume, for recovery to check."""
        pending: builtins.list[Volume] = []
        for volume in self.store.load():
            driver = self.drivers.get(volume.driver)
            if driver is None:
                log.warning(
                    "volume %s belongs to driver %s, which is not configured: kept, not served",
                    volume.name,
                    volume.driver,
                )
                continue
            volume.mountpoint = driver.backend.mountpoint(ref(volume))
            if volume.state in VISIBLE:
                self.volumes[volume.driver][volume.name] = volume
            pending.append(volume)
        return pending

    def close(self) -> None:
        for task in self.background:
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        for name, driver in self.drivers.items():
            if isinstance(driver.backend, Closable):
                try:
                    driver.backend.close()  # e.g. log out of the storage system
                except Exception:
                    log.exception("driver %s: closing its backend", name)

    # reads: memory only -----------------------------------------------------------------
    def driver(self, name: str) -> Driver:
        try:
            return self.drivers[name]
        except KeyError:
            known = ", ".join(sorted(self.drivers)) or "none"
            raise NotFound(f"no driver named {name!r}: configured drivers are {known}") from None

    def get(self, driver: str, name: str) -> Volume:
        try:
            return self.volumes[driver][name]
        except KeyError:
            self.driver(driver)
            validate_name(name)
            raise NotFound(f"volume {name} not found (driver {driver})") from None

    # changes ----------------------------------------------------------------------------
    def save(
        self,
        volume: Volume,
        *,
        add_mount: str | None = None,
        drop_mount: str | None = None,
        drop_all_mounts: bool = False,
        durable: bool = True,
    ) -> None:
        """Record the volume's state in the store, and tell the frontends' caches.

        Every change Get, List or Path could show goes through here (or `changed`), so a
        frontend may cache its answers for as long as the driver's generation stands."""
        self.store.update(
            volume,
            add_mount=add_mount,
            drop_mount=drop_mount,
            drop_all_mounts=drop_all_mounts,
            durable=durable,
        )
        self.changed(volume.driver)

    def changed(self, driver: str) -> None:
        self.generation[driver] += 1

    # concurrency ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lock(self, driver: str, name: str) -> AsyncIterator[None]:
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

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a backend call in a worker thread (or here, when the backend says it is Quick).

        If the caller is cancelled, wait for the worker before the cancellation goes on: a
        thread cannot be stopped, and the caller's volume lock must not be released while a
        backend call on that volume still runs (a backend never sees two at once)."""
        backend = getattr(function, "__self__", None)
        if isinstance(backend, Quick) and args and backend.quick(function.__name__, args[0]):
            return function(*args)
        loop = asyncio.get_running_loop()
        # The worker runs in the caller's context: its log lines carry the operation ID,
        # and a repair or preemption it reports becomes an event of this registry's journal.
        worker_context = contextvars.copy_context()
        worker_context.run(NOTICE_LISTENER.set, self._noticed)
        work = loop.run_in_executor(self._executor, worker_context.run, function, *args)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait([work])  # its result or error is the cancelled caller's
            raise

    def _noticed(self, kind: str, driver: str, volume: str, message: str) -> None:
        self.events.emit(kind, message, driver, volume, logging.WARNING)

    async def call_tracked(
        self, task_id: str | None, what: str, function: Callable[..., T], *args: Any
    ) -> T:
        """`call`, with the bytes the backend reports shown to `progress` polls of `task_id`."""
        if not task_id:
            return await self.call(function, *args)
        with self.progress.task(task_id, what) as task:
            return await self.call(reporting, task, function, *args)

    def run_later(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` in the background; `close()` cancels what is still running."""
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def ref(volume: Volume) -> VolumeRef:
    """The volume as its backend sees it."""
    return VolumeRef(volume.name, volume.options, volume.record)


def forget_lost_mounts(registry: VolumeRegistry, volume: Volume, error: VolumeLost) -> None:
    """The backend found the volume held by another host and dropped its mount here: the
    mount IDs recorded here are gone with it; Status says why until the next success."""
    log.error("volume %s: %s", volume.name, error)
    if volume.mount_ids:  # an event when it takes mounts away (not at each refused Mount)
        registry.events.emit(
            "lost",
            f"volume {volume.name} is held by another host now: its mounts here are gone ({error})",
            volume.driver,
            volume.name,
            logging.WARNING,
            mounts=volume.mounts,
        )
    volume.mount_ids.clear()
    volume.state = State.READY
    volume.fault = f"lost: {error}"
    registry.save(volume, drop_all_mounts=True)


def user_error(error: Exception, doing: str) -> OrlopError:
    """An error for the user: an OrlopError as it is, anything else as a BackendError."""
    if isinstance(error, OrlopError):
        return error
    return BackendError(f"{doing}: {error}")
