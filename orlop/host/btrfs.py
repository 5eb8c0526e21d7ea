"""btrfs subvolumes: create, snapshot (read-only or writable), delete, and tell one apart."""

from __future__ import annotations

import os

from orlop.host.mounts import filesystem_type
from orlop.host.run import run

BTRFS_SUPER_MAGIC = 0x9123683E
SUBVOLUME_INODE = 256  # every subvolume's root directory has this inode number on btrfs
BTRFS_TIMEOUT = 120.0


def is_btrfs(path: str) -> bool:
    """Whether `path` lies on a btrfs filesystem."""
    return filesystem_type(path) == "btrfs"


def is_subvolume(path: str) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return info.st_ino == SUBVOLUME_INODE and is_btrfs(path)


def create(path: str) -> None:
    """A new, empty subvolume at `path` (which must not exist)."""
    run(["btrfs", "subvolume", "create", "--", path], timeout=BTRFS_TIMEOUT)


def snapshot(source: str, target: str, readonly: bool) -> None:
    """Snapshot the subvolume `source` as `target` (which must not exist): instant."""
    args = ["btrfs", "subvolume", "snapshot"]
    if readonly:
        args.append("-r")
    run([*args, "--", source, target], timeout=BTRFS_TIMEOUT)


def delete(path: str) -> None:
    """Delete the subvolume `path` (read-only ones too); commit so the space is freed soon."""
    run(["btrfs", "subvolume", "delete", "--", path], timeout=BTRFS_TIMEOUT)
