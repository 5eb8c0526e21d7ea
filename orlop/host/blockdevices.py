"""Block devices on this host, behind an interface the cloud layer is given (a seam: unit
tests hand it devices that appear when an in-memory cloud attaches a disk)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Protocol


class BlockDevices(Protocol):
    def find(self, paths: Iterable[str]) -> str | None:
        """The first of `paths` that is a block device now, resolved; None if none is (yet)."""

    def size(self, device: str) -> int:
        """The size the kernel reports for `device`, in bytes (0 if it cannot tell)."""


def block_device(path: str) -> str | None:
    """`path` resolved, if it is (or links to) a block device."""
    try:
        resolved = os.path.realpath(path)
        if stat.S_ISBLK(os.stat(resolved).st_mode):
            return resolved
    except OSError:
        pass
    return None


def find_device(paths: Iterable[str]) -> str | None:
    for path in paths:
        device = block_device(path)
        if device is not None:
            return device
    return None


def device_bytes(device: str) -> int:
    name = os.path.basename(os.path.realpath(device))
    try:
        with open(f"/sys/class/block/{name}/size", encoding="ascii") as size:
            return int(size.read()) * 512
    except (OSError, ValueError):
        return 0


class HostBlockDevices:
    """The real ones: /dev and /sys of this host."""

    def find(self, paths: Iterable[str]) -> str | None:
        return find_device(paths)

    def size(self, device: str) -> int:
        return device_bytes(device)
