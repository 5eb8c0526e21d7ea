"""Mount and Unmount: Docker's mount IDs counted per volume, attach on the first, detach
after the last (and CSI's holders beside them). Composed by `VolumeService`, which counts
and traces the calls; the rules are the service's (see orlop.core.service).
"""

from __future__ import annotations

import logging

from orlop.core.boot import BootWait
from orlop.core.inflight import InFlight
from orlop.core.model import Conflict, State, Volume, VolumeLost
from orlop.core.registry import Driver, VolumeRegistry, forget_lost_mounts, ref, user_error
from orlop.core.usage import UsageMeter

log = logging.getLogger(__name__)


class Mounts:
    def __init__(self, registry: VolumeRegistry, inflight: InFlight, usage: UsageMeter) -> None:
        self.registry = registry
        self.inflight = inflight
        self.usage = usage
        # Mounts before a backend ever answered: no wait, unless the daemon sets one
        self.boot = BootWait(window=0)

    async def mount(
        self, driver_name: str, name: str, mount_id: str, timeout: float | None = None
    ) -> str:
        """Attach on the first mount ID; a known ID changes nothing. Returns the mountpoint.

        The same Mount again while one is in flight joins it; the caller waits at most
        `timeout` seconds (see `InFlight`)."""
        return await self.inflight.run(
            ("mount", driver_name, name, mount_id),
            lambda: self._mount(driver_name, name, mount_id),
            timeout,
            f"mounting volume {name}",
        )

    async def _mount(self, driver_name: str, name: str, mount_id: str) -> str:
        driver = self.registry.driver(driver_name)
        registry = self.registry
        async with registry.lock(driver_name, name):
            volume = self.registry.get(driver_name, name)
            if mount_id in volume.mount_ids:
                return volume.mountpoint
            first = not volume.mount_ids
            if first:
                volume.state = State.ATTACHING
                registry.save(volume, durable=False)
            attached = settled = False
            try:
                # Also on later IDs: attach is idempotent, repairs a dead network mount, and
                # finds a disk another host took (VolumeLost: its mounts here are gone).
                path = await self.boot.run(
                    driver_name,
                    f"mounting volume {name}",
                    lambda: registry.call(driver.backend.attach, ref(volume)),
                )
                attached = True
            except VolumeLost as error:
                if not volume.mount_ids:  # nothing here to lose: a refused Mount
                    registry.events.emit(
                        "mount_failed",
                        str(error),
                        driver_name,
                        name,
                        logging.WARNING,
                        error=type(error).__name__,
                    )
                forget_lost_mounts(registry, volume, error)
                settled = True
                raise
            except Exception as error:
                failed = user_error(error, f"mounting volume {name}")
                self.registry.events.emit(
                    "mount_failed",
                    str(failed),
                    driver_name,
                    name,
                    logging.WARNING,
                    error=type(failed).__name__,
                )
                raise failed from error
            finally:
                if not attached and first and not settled:  # no container will use it
                    await self.settle_detached(driver, volume)
            volume.state = State.ATTACHED
            volume.fault = ""
            volume.mountpoint = path
            volume.mount_ids.add(mount_id)
            try:
                registry.save(volume, add_mount=mount_id, durable=False)
            except Exception:  # not recorded (a full state disk): Docker never unmounts it
                volume.mount_ids.discard(mount_id)
                raise
            host = self.registry.events.host
            self.registry.events.emit(
                "mounted",
                f"mounted volume {name} on host {host} at {path}"
                + ("" if first else f" ({volume.mounts} mounts)"),
                driver_name,
                name,
                mountpoint=path,
                mounts=volume.mounts,
            )
            return path

    async def hold(self, driver_name: str, name: str, holder: str) -> None:
        """One more holder of a volume that is attached already (a CSI target bound from its
        stage): recorded like a mount ID, without asking the backend again; `unmount` drops it."""
        async with self.registry.lock(driver_name, name):
            volume = self.registry.get(driver_name, name)
            if holder in volume.mount_ids:
                return
            if not volume.mount_ids:
                raise Conflict(f"volume {name} is not attached on this host: stage it first")
            volume.mount_ids.add(holder)
            self.registry.save(volume, add_mount=holder, durable=False)

    async def unmount(
        self, driver_name: str, name: str, mount_id: str, timeout: float | None = None
    ) -> None:
        """Forget `mount_id`; detach after the last one. An unknown ID changes nothing.
        Joined and timed like `mount`."""
        await self.inflight.run(
            ("unmount", driver_name, name, mount_id),
            lambda: self._unmount(driver_name, name, mount_id),
            timeout,
            f"unmounting volume {name}",
        )

    async def _unmount(self, driver_name: str, name: str, mount_id: str) -> None:
        driver = self.registry.driver(driver_name)
        registry = self.registry
        async with registry.lock(driver_name, name):
            volume = self.registry.get(driver_name, name)
            if mount_id not in volume.mount_ids:
                if volume.state == State.DETACHING and not volume.mount_ids:
                    # The last Unmount's detach failed (an API fault): a repeat finishes it.
                    await self.settle_detached(driver, volume, raise_errors=True)
                return
            volume.mount_ids.discard(mount_id)
            if volume.mount_ids:
                registry.save(volume, drop_mount=mount_id, durable=False)
                self.registry.events.emit(
                    "unmounted",
                    f"unmounted volume {name} ({volume.mounts} mounts left: still attached)",
                    driver_name,
                    name,
                    mounts=volume.mounts,
                )
                return
            volume.state = State.DETACHING
            registry.save(volume, drop_mount=mount_id, durable=False)
            await self.settle_detached(driver, volume, raise_errors=True)
            self.registry.events.emit(
                "unmounted",
                f"unmounted volume {name} from host {self.registry.events.host}",
                driver_name,
                name,
                mounts=0,
            )
        self.usage.refresh_later(volume)

    async def settle_detached(
        self, driver: Driver, volume: Volume, raise_errors: bool = False
    ) -> None:
        """Detach and record READY; on failure keep the fault for Status and recover().

        Cancelled meanwhile: no fault (nothing failed); the state stays as it was, and
        recover() settles it at the next start."""
        try:
            await self.registry.call(driver.backend.detach, ref(volume))
        except Exception as error:
            volume.fault = f"detach failed: {error}"
            self.registry.save(volume, durable=False)
            log.error("detaching %s: %s", volume.name, error)
            self.registry.events.emit(
                "detach_failed",
                f"detaching volume {volume.name} failed: {error} (tried again later)",
                volume.driver,
                volume.name,
                logging.WARNING,
            )
            if raise_errors:
                raise user_error(error, f"unmounting volume {volume.name}") from error
            return
        volume.state = State.READY
        volume.fault = ""
        self.registry.save(volume, durable=False)

    async def detach_or_raise(self, driver: Driver, volume: Volume) -> None:
        await self.settle_detached(driver, volume, raise_errors=True)
