"""Backups: an optional capability (`Backupable`): copies of a volume in a repository off this
host (restic), listed and restored by any host configured with the same repository.

A restore makes a new volume whose options say where its data comes from (`from_backup=…`),
so it is an ordinary create: intent first, undone by recovery if the daemon dies meanwhile.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard

from orlop.backends.base import Backend, Backupable
from orlop.core.model import Conflict, InvalidOption, NotFound, OrlopError, Volume, validate_name
from orlop.core.registry import VolumeRegistry, ref, user_error
from orlop.ops.counters import volume_work

log = logging.getLogger(__name__)

CreateVolume = Callable[[str, str, dict[str, str], str | None], Awaitable[Volume]]


class Backups:
    def __init__(self, registry: VolumeRegistry, create_volume: CreateVolume) -> None:
        self.registry = registry
        self.create_volume = create_volume

    def drivers(self) -> builtins.list[str]:
        """The drivers with a backup repository."""
        return sorted(
            name for name, driver in self.registry.drivers.items() if _can_backup(driver.backend)
        )

    def _backend(self, driver_name: str) -> Backupable:
        driver = self.registry.driver(driver_name)
        if not _can_backup(driver.backend):
            able = ", ".join(self.drivers()) or "none"
            raise InvalidOption(
                f"driver {driver_name} ({driver.kind}) has no backups: configure "
                f"backup_repository and backup_password_file in its settings (drivers with "
                f"backups: {able})"
            )
        return driver.backend

    async def create(self, driver_name: str, name: str, task: str | None = None) -> dict[str, Any]:
        """Back up volume `name`, from a snapshot: the volume stays in use meanwhile."""
        backend = self._backend(driver_name)
        self.registry.get(driver_name, name)  # metrics count runs of volumes that exist
        with volume_work("backup", driver_name, name):
            try:
                made = await self._create(backend, driver_name, name, task)
            except Exception as error:
                self.registry.events.emit(
                    "backup_failed",
                    f"backup of volume {name} failed: {error}",
                    driver_name,
                    name,
                    logging.WARNING,
                )
                raise
        self.registry.events.emit(
            "backup_done",
            f"backed up volume {name} (backup {made.get('id')})",
            driver_name,
            name,
            backup=made.get("id"),
        )
        return made

    async def _create(
        self, backend: Backupable, driver_name: str, name: str, task: str | None
    ) -> dict[str, Any]:
        # One backup of a volume at a time ("#" is in no volume name); the volume's own lock
        # only while its snapshot is taken, so Mount and Unmount do not wait for the upload.
        async with self.registry.lock(driver_name, f"{name}#backup"):
            async with self.registry.lock(driver_name, name):
                volume = self.registry.get(driver_name, name)
                try:
                    staged = await self.registry.call(backend.stage_backup, ref(volume))
                except Exception as error:
                    raise user_error(error, f"snapshotting volume {name} to back up") from error
            try:
                made = await self.registry.call_tracked(
                    task, f"backup of {name}", backend.send_backup, ref(volume), staged
                )
            except Exception as error:
                raise user_error(error, f"backing up volume {name}") from error
        log.info("backup %s of volume %s (driver %s)", made.get("id"), name, driver_name)
        return {**made, "driver": driver_name}

    async def list(
        self, driver_name: str, volume: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        backend = self._backend(driver_name)
        if volume is not None:
            validate_name(volume)
        try:
            found = await self.registry.call(backend.list_backups, volume)
        except Exception as error:
            raise user_error(error, "listing backups") from error
        return [{**backup, "repository_of": driver_name} for backup in found]

    async def restore(
        self, driver_name: str, backup: str, to: str | None, task: str | None = None
    ) -> Volume:
        """Make volume `to` (default: the backup's own volume name) from `backup`."""
        backend = self._backend(driver_name)
        try:
            found = await self.registry.call(backend.find_backup, backup)
        except OrlopError:
            raise
        except Exception as error:
            raise user_error(error, f"finding backup {backup}") from error
        name = to or str(found["volume"])
        validate_name(name)
        if name in self.registry.volumes[driver_name]:
            raise Conflict(
                f"volume {name} already exists: restore into a new volume with --to NAME, "
                f"or remove {name} first"
            )
        options = backend.backup_options(found)
        volume = await self.create_volume(driver_name, name, options, task)
        log.info("restored backup %s into volume %s (driver %s)", backup, name, driver_name)
        self.registry.events.emit(
            "backup_restored",
            f"restored backup {backup} into volume {name}",
            driver_name,
            name,
            backup=backup,
        )
        return volume


def find_backup_driver(backups: Backups, driver: str | None) -> str:
    """The driver to use when none was named: the only one with backups."""
    if driver:
        return driver
    able = backups.drivers()
    if len(able) == 1:
        return able[0]
    if not able:
        raise NotFound(
            "no driver has a backup repository: set backup_repository and "
            "backup_password_file in a directory or loopfile driver's settings"
        )
    raise InvalidOption(f"several drivers have backups ({', '.join(able)}): name one with --driver")


def _can_backup(backend: Backend) -> TypeGuard[Backupable]:
    return backend.capabilities.backup and isinstance(backend, Backupable)
