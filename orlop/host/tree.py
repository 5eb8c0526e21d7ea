"""Measure a directory tree with a time budget (usage of volumes that have no quota), or the
filesystem a volume is (statvfs: bytes and inodes)."""

from __future__ import annotations

import os
import time
from typing import NamedTuple

from orlop.core.model import Usage


class TreeUsage(NamedTuple):
    bytes: int
    inodes: int  # entries below the root, and the root itself (like du --inodes)


def tree_size(path: str, seconds: float, *, allocated: bool = True) -> int | None:
    """Bytes below `path`, or None if the walk takes longer than `seconds`.

    `allocated=True` counts blocks on disk and stays on `path`'s filesystem (like du -sx);
    `allocated=False` adds apparent file sizes, for remote filesystems that report no blocks.
    """
    found = tree_usage(path, seconds, allocated=allocated)
    return None if found is None else found.bytes


def tree_usage(path: str, seconds: float, *, allocated: bool = True) -> TreeUsage | None:
    """Bytes and entries below `path` (see `tree_size`), or None past `seconds`."""
    deadline = time.monotonic() + seconds
    try:
        root_dev = os.lstat(path).st_dev
    except OSError:
        return None
    total = 0
    entries = 1
    stack = [path]
    while stack:
        if time.monotonic() > deadline:
            return None
        try:
            listing = os.scandir(stack.pop())
        except OSError:
            continue
        with listing:
            for entry in listing:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                entries += 1
                is_dir = entry.is_dir(follow_symlinks=False)
                if allocated:
                    total += info.st_blocks * 512
                elif not is_dir:
                    total += info.st_size
                if is_dir and (not allocated or info.st_dev == root_dev):
                    stack.append(entry.path)
    return TreeUsage(total, entries)


def filesystem_usage(path: str) -> Usage:
    """Size, used and free bytes and inodes of the filesystem at `path` (a volume that is a
    filesystem of its own). Inodes are None where the filesystem has no fixed count (btrfs
    reports 0 files)."""
    fs = os.statvfs(path)
    size = fs.f_blocks * fs.f_frsize
    usage = Usage(used=size - fs.f_bfree * fs.f_frsize, size=size, free=fs.f_bavail * fs.f_frsize)
    if fs.f_files:
        usage.inodes = fs.f_files
        usage.inodes_used = fs.f_files - fs.f_ffree
        usage.inodes_free = fs.f_favail
    return usage
