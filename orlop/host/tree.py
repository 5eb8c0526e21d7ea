"""Measure a directory tree with a time budget (usage of volumes that have no quota)."""

from __future__ import annotations

import os
import time


def tree_size(path: str, seconds: float, *, allocated: bool = True) -> int | None:
    """Bytes below `path`, or None if the walk takes longer than `seconds`.

    `allocated=True` counts blocks on disk and stays on `path`'s filesystem (like du -sx);
    `allocated=False` adds apparent file sizes, for remote filesystems that report no blocks.
    """
    deadline = time.monotonic() + seconds
    try:
        root_dev = os.lstat(path).st_dev
    except OSError:
        return None
    total = 0
    stack = [path]
    while stack:
        if time.monotonic() > deadline:
            return None
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                if allocated:
                    total += info.st_blocks * 512
                elif not is_dir:
                    total += info.st_size
                if is_dir and (not allocated or info.st_dev == root_dev):
                    stack.append(entry.path)
    return total
