"""The trash: a driver with `trash: 24h` keeps a removed volume's storage that long.

Remove then records the volume TRASHED (hidden from Get and List, its name reserved) and
keeps its row, options and record; `restore` brings it back as it was; `purge` (or the
sweep, once the time is up, also across restarts: the expiry is in the store) asks the
backend to delete it. A purge the backend refuses keeps the volume in the trash, tried
again at the next sweep: on a cloud driver the provider's attachment list, read fresh at
the purge, says whether another host has the disk attached, and the cloud layer refuses
to delete a disk attached elsewhere, so a prune on one host never deletes what another
host has mounted.
"""

from __future__ import annotations

import builtins
import logging
import re
import time
from dataclasses import dataclass

from orlop.core import context
from orlop.core.model import Conflict, NotFound, State, Volume, rfc3339
from orlop.core.registry import VolumeRegistry, ref

log = logging.getLogger(__name__)

_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*\Z")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SWEEP_INTERVAL = 60.0  # seconds between sweeps of expired volumes


def parse_duration(value: str) -> float:
    """Seconds in a duration such as "24h", "30m", "7d", "90s"; "off" or "0" is 0 (off)."""
    if value.strip().lower() in {"off", "false", "no"}:
        return 0.0
    match = _DURATION_RE.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a duration: use a number with s, m, h or d (e.g. 24h), or off"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class TrashEntry:
    driver: str
    name: str
    removed_at: float
    expires_at: float

    def as_dict(self) -> dict[str, str]:
        return {
            "driver": self.driver,
            "name": self.name,
            "removed_at": rfc3339(self.removed_at),
            "expires_at": rfc3339(self.expires_at),
        }


class Trash:
    def __init__(self, registry: VolumeRegistry, stored: list[Volume]) -> None:
        self.registry = registry
        self.volumes = {(v.driver, v.name): v for v in stored if v.state == State.TRASHED}
        self.entries = {
            (driver, name): TrashEntry(driver, name, removed, expires)
            for driver, name, removed, expires in registry.store.trash_rows()
            if (driver, name) in self.volumes
        }
        for driver, name in self.volumes:
            registry.trashed.setdefault(driver, set()).add(name)

    def holds(self, driver: str, name: str) -> bool:
        return (driver, name) in self.volumes

    def refuse_name(self, driver: str, name: str) -> None:
        """A Create of a name in the trash: the storage there still is that volume."""
        entry = self.entries.get((driver, name))
        if entry is not None:
            raise Conflict(
                f"volume {name} is in the trash until {rfc3339(entry.expires_at)}: "
                f"restore it (orlop trash restore {name}) or purge it "
                f"(orlop trash purge {name}) first"
            )

    def keep(self, volume: Volume, seconds: float) -> None:
        """Remove `volume` into the trash (the caller holds its lock and checked mounts)."""
        now = time.time()
        volume.state = State.TRASHED
        self.registry.store.trash_insert(volume, now, now + seconds)  # one durable commit
        del self.registry.volumes[volume.driver][volume.name]
        self.registry.changed(volume.driver)
        self.volumes[(volume.driver, volume.name)] = volume
        self.registry.trashed.setdefault(volume.driver, set()).add(volume.name)
        self.entries[(volume.driver, volume.name)] = TrashEntry(
            volume.driver, volume.name, now, now + seconds
        )
        log.info(
            "volume %s (driver %s) kept in the trash for %.0f s",
            volume.name,
            volume.driver,
            seconds,
        )

    def list(self) -> list[TrashEntry]:
        return sorted(self.entries.values(), key=lambda entry: (entry.driver, entry.name))

    def _find(self, name: str, driver: str | None) -> tuple[str, str]:
        keys = [key for key in self.entries if key[1] == name and driver in (None, key[0])]
        if not keys:
            raise NotFound(f"volume {name} is not in the trash (see orlop trash ls)")
        if len(keys) > 1:
            drivers = ", ".join(sorted(key[0] for key in keys))
            raise Conflict(f"volume {name} is in the trash of drivers {drivers}: name one")
        return keys[0]

    async def restore(self, name: str, driver: str | None = None) -> Volume:
        """Bring the volume back: same name, storage, options and record."""
        key = self._find(name, driver)
        registry = self.registry
        async with registry.lock(*key):
            volume = self.volumes.pop(key)
            del self.entries[key]
            registry.trashed[key[0]].discard(key[1])
            volume.state = State.READY
            registry.store.trash_delete(*key)
            registry.save(volume)
            registry.volumes[key[0]][key[1]] = volume
            registry.changed(key[0])
        log.info("restored volume %s (driver %s) from the trash", name, key[0])
        registry.events.emit(
            "trash_restored", f"restored volume {name} from the trash", key[0], name
        )
        return volume

    async def purge(self, name: str | None = None, driver: str | None = None) -> builtins.list[str]:
        """Delete the storage of `name` (or of every volume in the trash); names purged.
        A backend refusal (e.g. a disk attached to another host) is raised for one name,
        and logged, the volume kept, when purging all."""
        keys = [self._find(name, driver)] if name is not None else list(self.entries)
        purged: builtins.list[str] = []
        for key in keys:
            try:
                await self._purge_one(key)
                purged.append(key[1])
                self.registry.events.emit(
                    "trash_purged", f"purged volume {key[1]} from the trash", *key
                )
            except Exception as error:
                if name is not None:
                    raise
                log.error("purging %s from the trash: %s (kept; tried again later)", key[1], error)
        return purged

    async def _purge_one(self, key: tuple[str, str]) -> None:
        registry = self.registry
        async with registry.lock(*key):
            volume = self.volumes[key]
            driver = registry.drivers[key[0]]
            await registry.call(driver.backend.remove, ref(volume))
            registry.store.delete(*key)  # the trash row goes with it (cascade)
            del self.volumes[key], self.entries[key]
            registry.trashed[key[0]].discard(key[1])
        log.info("purged volume %s (driver %s) from the trash", key[1], key[0])

    async def sweep(self, now: float | None = None) -> builtins.list[str]:
        """Purge every volume whose time in the trash is up."""
        moment = time.time() if now is None else now
        expired = [key for key, entry in self.entries.items() if entry.expires_at <= moment]
        purged: builtins.list[str] = []
        for key in expired:
            try:
                with context.ensure("trash_expiry", *key):
                    await self._purge_one(key)
                    self.registry.events.emit(
                        "trash_expired",
                        f"volume {key[1]}'s time in the trash is up: its storage is freed",
                        *key,
                    )
                purged.append(key[1])
            except Exception as error:
                log.error("purging expired %s: %s (kept; tried again later)", key[1], error)
        return purged
