"""Targets: bind mounts of a volume's mounted data at paths an orchestrator names (CSI's
staging and target paths). The core's door to host/ for the CSI frontend."""

from __future__ import annotations

import contextlib
import os

from orlop.host import mounts


def is_mounted(path: str) -> bool:
    return mounts.is_mountpoint(path)


def read_only(path: str) -> bool:
    entry = mounts.mount_at(os.path.realpath(path))
    return entry is not None and "ro" in entry.options.split(",")


def bind(source: str, target: str, readonly: bool) -> None:
    """Bind `source` at `target` (made if missing); an existing mount there is kept."""
    os.makedirs(target, exist_ok=True)
    if mounts.is_mountpoint(target):
        return
    mounts.mount(source, target, options=["bind", "ro"] if readonly else ["bind"])


def bind_device(source: str, target: str) -> None:
    """Bind the device file `source` onto the file `target` (made, with its parents, if
    missing); an existing mount there is kept."""
    os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
    if mounts.is_mountpoint(target):
        return
    if not os.path.exists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
    mounts.mount(source, target, options=["bind"])


def device_size(path: str) -> int:
    """The size in bytes of the block device at `path` (a device file or a bind of one)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(descriptor, 0, os.SEEK_END)
    finally:
        os.close(descriptor)


def unmount(target: str) -> None:
    """Unmount `target` if mounted; the directory stays."""
    mounts.unmount(target)


def unbind(target: str) -> None:
    """Unmount `target` and remove it: its directory if empty, or the empty file a raw
    block volume was bound onto."""
    mounts.unmount(target)
    if mounts.is_mountpoint(target):
        return
    if os.path.isdir(target):
        with contextlib.suppress(OSError):  # not empty: not ours to delete
            os.rmdir(target)
    elif os.path.isfile(target) and os.path.getsize(target) == 0:
        os.remove(target)
