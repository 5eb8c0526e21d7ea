"""Crash recovery: finish or undo what a crash interrupted; make mounts match the mount IDs.

Runs once at start, volume by volume under each volume's lock, while the sockets already
answer: a Mount that arrives meanwhile waits for that volume's repair and no longer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from orlop.core import context
from orlop.core.model import Conflict, State, Volume, VolumeLost
from orlop.core.registry import Driver, VolumeRegistry, forget_lost_mounts, ref
from orlop.ops.reachability import report as backend_outcome

log = logging.getLogger(__name__)

# Detach a volume and record it READY; raises when the backend cannot.
Detacher = Callable[[Driver, Volume], Awaitable[None]]


class Recovery:
    def __init__(self, registry: VolumeRegistry, pending: list[Volume], detach: Detacher) -> None:
        self.registry = registry
        self._pending = pending  # every volume the store held at start
        self._detach = detach
        # For `orlop status`: per driver, volumes not yet repaired; the ones being repaired.
        self.waiting: dict[str, set[str]] = {}
        for volume in pending:
            self.waiting.setdefault(volume.driver, set()).add(volume.name)
        self.repairing: dict[str, set[str]] = {}
        self.failed: dict[str, int] = {}

    def progress(self, driver: str) -> dict[str, object]:
        """What recovery is still doing for `driver`: volumes left, those under repair now
        (their backend call may be waiting on an unreachable backend), repairs that failed."""
        return {
            "waiting": len(self.waiting.get(driver, ())),
            "repairing": sorted(self.repairing.get(driver, ())),
            "failed": self.failed.get(driver, 0),
        }

    async def run(self) -> None:
        from orlop.host.mounts import mounted_paths

        events = self.registry.events
        with context.operation("recovery"):
            try:
                mounted = await self.registry.call(mounted_paths)
                pending, self._pending = self._pending, []
                await asyncio.gather(*(self._recover_one(volume, mounted) for volume in pending))
            except Exception as error:
                events.emit(
                    "recovery_failed", f"crash recovery failed: {error}", level=logging.ERROR
                )
                raise
            events.emit(
                "recovery_finished", f"crash recovery finished ({len(pending)} volumes checked)"
            )

    async def _recover_one(self, stored: Volume, mounted: set[str]) -> None:
        registry = self.registry
        driver = registry.drivers[stored.driver]
        with context.ensure("recovery", stored.driver, stored.name):
            async with registry.lock(stored.driver, stored.name):
                volume = registry.volumes[stored.driver].get(stored.name, stored)
                repairing = self.repairing.setdefault(stored.driver, set())
                repairing.add(stored.name)
                try:
                    done = await self._reconcile(driver, volume, mounted)
                except Exception as error:
                    log.error("recovering volume %s: %s", volume.name, error)
                    volume.fault = f"recovery failed: {error}"
                    registry.save(volume)
                    self.failed[stored.driver] = self.failed.get(stored.driver, 0) + 1
                    # A fault says the backend is down; a repair that worked says nothing (it
                    # may have asked only this host's mount table).
                    backend_outcome(stored.driver, error, "recovery")
                    registry.events.emit(
                        "recovered",
                        f"recovering volume {volume.name} failed: {error}",
                        level=logging.WARNING,
                        failed=True,
                    )
                    return
                finally:
                    repairing.discard(stored.name)
                    self.waiting.get(stored.driver, set()).discard(stored.name)
                if done:
                    registry.events.emit("recovered", f"recovery: {done}")

    async def _reconcile(self, driver: Driver, volume: Volume, mounted: set[str]) -> str:
        """Settle one volume; what was done ("" when it was as recorded)."""
        backend, volume_ref = driver.backend, ref(volume)
        if volume.state == State.TRASHED:
            return ""  # kept, detached: the trash's sweep owns it
        if volume.state in (State.CREATING, State.REMOVING):
            log.info("finishing interrupted %s of %s", volume.state.value, volume.name)
            await self.registry.call(backend.remove, volume_ref)
            self.registry.store.delete(volume.driver, volume.name)
            what = "create" if volume.state == State.CREATING else "remove"
            return f"undid the interrupted {what} of volume {volume.name}"
        # Asks the storage as well as the mount table (a cloud disk may be held elsewhere now).
        attached = await self.registry.call(backend.is_attached, volume_ref, mounted)
        if volume.mount_ids:
            if not attached or volume.state != State.ATTACHED:
                log.info("re-attaching %s for %d mount(s)", volume.name, volume.mounts)
                try:
                    repair = dataclasses.replace(volume_ref, repair=True)
                    volume.mountpoint = await self.registry.call(backend.attach, repair)
                except Conflict as error:
                    if not isinstance(error, VolumeLost) and not _exclusive(driver):
                        raise
                    # Held by another host now (preempted while this one was down): the
                    # containers that mounted it here cannot have it back.
                    lost = error if isinstance(error, VolumeLost) else VolumeLost(str(error))
                    forget_lost_mounts(self.registry, volume, lost)
                    return f"volume {volume.name} is held by another host: its mounts are gone"
                volume.state = State.ATTACHED
                volume.fault = ""
                self.registry.save(volume)
                return f"re-attached volume {volume.name} for {volume.mounts} mount(s)"
            volume.state = State.ATTACHED
            volume.fault = ""
            self.registry.save(volume)
        elif attached or volume.state != State.READY:
            log.info("detaching %s: no container holds it", volume.name)
            await self._detach(driver, volume)
            return f"detached volume {volume.name}: no container holds it"
        return ""


def _exclusive(driver: Driver) -> bool:
    """A backend whose storage one host holds at a time (cloud disks): a Conflict on
    re-attach means another host holds it."""
    return bool(driver.backend.capabilities.exclusive_attach)
