"""What is mounted where on this host, and unmounting it, behind an interface a backend is
given (a seam: unit tests hand in a table of their own, with no root and no kernel mounts)."""

from __future__ import annotations

import os
from typing import Protocol

from orlop.host import mounts


class Mounter(Protocol):
    def mounted(self, target: str) -> str | None:
        """The source (device) of what is mounted at `target`, or None."""

    def unmount(self, target: str, lazy_if_busy: bool = False) -> None:
        """Unmount `target`; nothing mounted there is not an error."""


class HostMounter:
    """The real one: this host's mount table, umount(8)."""

    def mounted(self, target: str) -> str | None:
        entry = mounts.mount_at(os.path.realpath(target))
        return entry.source if entry is not None else None

    def unmount(self, target: str, lazy_if_busy: bool = False) -> None:
        mounts.unmount(target, lazy_if_busy=lazy_if_busy)
