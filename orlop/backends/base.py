"""The Backend protocol: what every storage backend implements, and nothing about Docker.

A backend is constructed once per configured driver with a `BackendContext`. Its methods
are plain blocking calls; the service runs them in worker threads, holding the volume's
lock, so a backend never sees two operations on the same volume at once. Every method
must be idempotent: the service repeats steps after a crash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from orlop.backends.settings import BackendSettings
from orlop.core.model import Usage
from orlop.core.options import OptionSet


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond the basic lifecycle; the service asks these, never a class.

    `orlop driver ls` and `inspect` report them. The service refuses `snapshot` and `resize`
    operations to a backend without the capability (and its protocol below)."""

    scope: Literal["local", "global"] = "local"  # global: every host sees the same volumes
    snapshot: bool = False  # Snapshottable: point-in-time copies
    clone: bool = False  # a new volume can start as a copy of another
    restore: bool = False  # Restorable: a snapshot back into its volume
    backup: bool = False  # Backupable: copies in a repository elsewhere
    resize: bool = False  # Resizable: a volume can grow after creation
    quota: bool = False  # a volume's `size` is a hard limit on what it can hold
    exclusive_attach: bool = False  # attached to one host at a time (a cloud disk)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What a backend instance gets from the daemon."""

    driver: str
    state_dir: str  # private to this driver: <state_dir>/drivers/<driver>
    defaults: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)  # backend-level config

    def path(self, *parts: str) -> str:
        return os.path.join(self.state_dir, *parts)


@dataclass(slots=True)
class VolumeRef:
    """A volume as a backend sees it: name, canonical options, and its own record."""

    name: str
    options: dict[str, str]
    record: dict[str, Any] = field(default_factory=dict)
    # Recovery re-attaching after a restart: take nothing from another host (no preempt).
    repair: bool = False


@dataclass(frozen=True, slots=True)
class Check:
    """One `orlop doctor` finding: what was checked, whether it passed, how to fix it."""

    name: str
    ok: bool
    detail: str = ""
    fix: str = ""


def tool_check(command: str, package: str) -> Check:
    """Doctor check: is `command` installed?"""
    from orlop.host.run import which

    path = which(command)
    return Check(
        f"command {command}", path is not None, path or "not found", f"apt-get install {package}"
    )


def filesystem_check(fstype: str, why: str) -> Check:
    """Doctor check: does the kernel know filesystem `fstype`?"""
    try:
        with open("/proc/filesystems", encoding="ascii") as table:
            known = {line.split()[-1] for line in table if line.strip()}
    except OSError:
        known = set()
    return Check(
        f"kernel filesystem {fstype}",
        fstype in known,
        why,
        f"modprobe {fstype} (or install a kernel with {fstype} support)",
    )


@runtime_checkable
class Backend(Protocol):
    kind: ClassVar[str]
    options: ClassVar[OptionSet]  # per volume, stored in the state DB: never a secret
    # The driver's `settings:` block (one per configured driver); `orlop serve` checks it.
    settings_model: ClassVar[type[BackendSettings]]
    capabilities: Capabilities

    def validate(self, name: str, options: dict[str, str]) -> None:
        """Reject combinations of (already canonical) options the backend cannot honour."""

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        """Allocate storage; return the record to persist. Same name+options twice: no-op."""

    def remove(self, volume: VolumeRef) -> None:
        """Free the storage; a volume that is already gone is not an error."""

    def mountpoint(self, volume: VolumeRef) -> str:
        """Where the volume's data appears once attached; pure, no I/O."""

    def attach(self, volume: VolumeRef) -> str:
        """Make the data reachable at its mountpoint; return that path."""

    def detach(self, volume: VolumeRef) -> None:
        """Undo attach; a volume that is not attached is not an error."""

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        """Whether the data is reachable now; `mounted` is the host's current mount points."""

    def usage(self, volume: VolumeRef) -> Usage | None:
        """Size, used and free bytes, or None when the backend cannot tell."""

    @classmethod
    def host_checks(cls) -> list[Check]:
        """What this backend needs from the host (tools, kernel features), for `orlop doctor`."""


@runtime_checkable
class Describable(Protocol):
    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        """Backend facts for Status (device, IDs, zone, …), from the record alone: no I/O,
        never a secret."""


@runtime_checkable
class Quick(Protocol):
    def quick(self, operation: str, volume: VolumeRef) -> bool:
        """Whether `operation` ("create", "attach", …) on `volume` is a few local syscalls that
        cannot block (no mount, no network, no walk of user data). The service then runs it on
        its event loop instead of a worker thread: two thread switches saved, which cost
        milliseconds on a busy host. When in doubt, False."""


@runtime_checkable
class Resizable(Protocol):
    def resize(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        """Grow the volume to `size` bytes (online if attached); return the new record."""


@runtime_checkable
class Snapshottable(Protocol):
    """Point-in-time copies of a volume; a backend offering them sets capabilities.snapshot.

    A snapshot is a dict with at least `id`, `name`, `volume`, `state`, `created_at`.
    """

    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        """Take a snapshot of `volume` called `name` (unique per driver)."""

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        """This driver's snapshots, all or of the volume called `volume`."""

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        """Delete a snapshot by ID or name; return what was deleted."""


@runtime_checkable
class Restorable(Protocol):
    """Snapshots that can be put back into their volume (capabilities.restore).

    The service calls this only while no container uses the volume."""

    def restore_snapshot(self, volume: VolumeRef, snapshot: str) -> dict[str, Any]:
        """Replace `volume`'s data with snapshot `snapshot`'s; return the snapshot's facts."""


@runtime_checkable
class Scheduled(Protocol):
    """Snapshots the daemon takes on a schedule (see orlop/core/schedule.py)."""

    def snapshot_schedule(self, volume: VolumeRef) -> str | None:
        """The volume's schedule (`hourly:24,daily:7`), its own or the driver's, or None."""


@runtime_checkable
class Backupable(Protocol):
    """Backups in a repository off this host (capabilities.backup), restorable elsewhere.

    A backup is a dict with at least `id`, `volume`, `created_at`."""

    def stage_backup(self, volume: VolumeRef) -> str:
        """Take the snapshot a backup reads (the volume may be in use); return a handle.
        Quick: the service holds the volume's lock meanwhile."""

    def send_backup(self, volume: VolumeRef, staged: str) -> dict[str, Any]:
        """Upload what `stage_backup` took, then drop it; return the new backup. Slow: the
        service holds no volume lock meanwhile (only one backup of a volume at a time)."""

    def list_backups(self, volume: str | None) -> list[dict[str, Any]]:
        """The repository's backups, all or of the volume called `volume`, oldest first."""

    def find_backup(self, backup: str) -> dict[str, Any]:
        """One backup by ID (or unique prefix); NotFound otherwise."""

    def backup_options(self, backup: dict[str, Any]) -> dict[str, str]:
        """The options of a new volume that restores `backup` (from_backup=…, size, …)."""


@runtime_checkable
class Closable(Protocol):
    """A backend holding something open (a session with its storage) until shutdown."""

    def close(self) -> None:
        """End it (log out); called once when the daemon stops. Never raises."""


@runtime_checkable
class Discoverable(Protocol):
    """A global backend whose storage knows the volumes (by name) better than this host."""

    discover_interval: float  # seconds between the daemon's discovery rounds

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Every volume the storage holds for this driver: (name, options, record)."""


@runtime_checkable
class Vanishing(Protocol):
    """A Discoverable backend that can tell a volume whose storage is gone (deleted by
    another host or controller) from one its listing merely missed."""

    def vanished(self, volume: VolumeRef) -> bool:
        """True when the volume's storage no longer exists (read afresh, not from a
        listing); this host's own traces of it (attachment files, tokens) are dropped then,
        and the caller forgets its record."""


@runtime_checkable
class Exclusive(Protocol):
    """A Discoverable backend whose volumes one host holds at a time (cloud disks)."""

    def release_if_lost(self, volume: VolumeRef) -> str | None:
        """If the storage shows the volume held by another host (as of the last listing,
        confirmed by a fresh read), drop what this host still has mounted of it and return
        who holds it; None while this host holds it."""
