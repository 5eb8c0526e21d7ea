"""Mounts: read /proc/self/mountinfo, mount and unmount through util-linux."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from orlop.host.run import CommandError, run

MOUNT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class MountEntry:
    mount_id: int
    mountpoint: str
    fstype: str
    source: str
    options: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_table(path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    """Every mount this process sees, in mount order."""
    entries = []
    with open(path, encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            fields = line.split()
            separator = fields.index("-")
            entries.append(
                MountEntry(
                    mount_id=int(fields[0]),
                    mountpoint=_unescape(fields[4]),
                    options=fields[5],
                    fstype=fields[separator + 1],
                    source=_unescape(fields[separator + 2]),
                )
            )
    return entries


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding `path` ("xfs", "btrfs", "ext4", …)."""
    real = os.path.realpath(path)
    best, fstype = "", "unknown"
    for entry in mount_table():
        point = entry.mountpoint.rstrip("/") + "/"
        if (real.rstrip("/") + "/").startswith(point) and len(point) >= len(best):
            best, fstype = point, entry.fstype
    return fstype


def mounted_paths() -> set[str]:
    return {entry.mountpoint for entry in mount_table()}


def mount_at(path: str) -> MountEntry | None:
    """The topmost mount at exactly `path`, or None."""
    found = None
    for entry in mount_table():
        if entry.mountpoint == path:
            found = entry
    return found


def is_mountpoint(path: str) -> bool:
    return mount_at(os.path.realpath(path)) is not None


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path`, deepest first (the order to unmount them)."""
    root = os.path.realpath(path).rstrip("/") + "/"
    found = {e.mountpoint for e in mount_table() if (e.mountpoint + "/").startswith(root)}
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def mount(
    source: str,
    target: str,
    fstype: str | None = None,
    options: Sequence[str] = (),
    timeout: float = MOUNT_TIMEOUT,
) -> None:
    args = ["mount"]
    if fstype:
        args += ["-t", fstype]
    if options:
        args += ["-o", ",".join(options)]
    run([*args, "--", source, target], timeout=timeout)


def unmount(target: str, timeout: float = MOUNT_TIMEOUT, lazy_if_busy: bool = False) -> None:
    """Unmount `target`; succeed if it is not mounted. Lazy-detach only if asked."""
    if not is_mountpoint(target):
        return
    try:
        run(["umount", "--", target], timeout=timeout)
    except CommandError:
        if not is_mountpoint(target):
            return
        if not lazy_if_busy:
            raise
        run(["umount", "--lazy", "--", target], timeout=timeout)
