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


def unmount(target: str) -> None:
    """Unmount `target` if mounted; the directory stays."""
    mounts.unmount(target)


def unbind(target: str) -> None:
    """Unmount `target` and remove its directory if empty."""
    mounts.unmount(target)
    if os.path.isdir(target) and not mounts.is_mountpoint(target):
        with contextlib.suppress(OSError):  # not empty: not ours to delete
            os.rmdir(target)
