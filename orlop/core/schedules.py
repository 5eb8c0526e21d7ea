"""Scheduled snapshots with retention, run by the daemon.

Every `interval` seconds (and once at start, which takes what was missed while the daemon was
down) each volume with a schedule (`Scheduled.snapshot_schedule`: its own option or its
driver's setting) gets the snapshots its periods are due, named `<volume>-<period>-<slot>`,
and loses the ones beyond each period's count. Only snapshots named by a schedule are ever
deleted here. The clock is a parameter: tests drive it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable

from orlop.backends.base import Scheduled
from orlop.core import context
from orlop.core.model import OrlopError
from orlop.core.registry import VolumeRegistry, ref
from orlop.core.schedule import due, due_every, expired, parse_schedule, slot
from orlop.core.snapshots import Snapshots, schedule_of
from orlop.ops.counters import volume_work

log = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class SnapshotScheduler:
    def __init__(
        self, registry: VolumeRegistry, snapshots: Snapshots, clock: Clock = utc_now
    ) -> None:
        self.registry = registry
        self.snapshots = snapshots
        self.clock = clock

    async def tick(self) -> list[str]:
        """Take due snapshots and drop expired ones, now; return what changed (for logs)."""
        changes: list[str] = []
        able = set(self.snapshots.drivers())
        for driver_name, driver in self.registry.drivers.items():
            backend = driver.backend
            if driver_name not in able or not isinstance(backend, Scheduled):
                continue
            for volume in list(self.registry.volumes[driver_name].values()):
                text = backend.snapshot_schedule(ref(volume))
                if not text:
                    continue
                period = due_every(text)
                with context.operation("snapshot_schedule", driver_name, volume.name):
                    try:
                        with volume_work("snapshot_schedule", driver_name, volume.name, period):
                            changes += await self._run(driver_name, volume.name, text)
                    except (OrlopError, OSError, ValueError) as error:
                        log.error("scheduled snapshots of %s: %s", volume.name, error)
                        self.registry.events.emit(
                            "snapshot_schedule_failed",
                            f"scheduled snapshots of volume {volume.name} failed: {error}",
                            level=logging.WARNING,
                        )
        return changes

    async def _run(self, driver_name: str, name: str, text: str) -> list[str]:
        schedule = parse_schedule(text)
        now = self.clock()
        made = await self.snapshots.list(driver_name, name)
        taken: dict[str, list[str]] = {}
        for snapshot in made:
            period = schedule_of(snapshot)
            if period:
                taken.setdefault(period, []).append(snapshot["name"].rsplit("-", 1)[1])
        changes = []
        for period in due(schedule, taken, now):
            new = f"{name}-{period}-{slot(period, now)}"
            await self.snapshots.create(driver_name, name, new)
            taken.setdefault(period, []).append(slot(period, now))
            changes.append(f"+{new}")
        for period, slots in expired(schedule, taken).items():
            for old in slots:
                await self.snapshots.delete(driver_name, f"{name}-{period}-{old}")
                changes.append(f"-{name}-{period}-{old}")
        return changes

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                changes = await self.tick()
                if changes:
                    log.info("scheduled snapshots: %s", " ".join(changes))
            except Exception:
                log.exception("scheduled snapshots")
            await asyncio.sleep(interval)
