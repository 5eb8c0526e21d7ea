"""What is mounted where on this host, and unmounting it, behind an interface a backend is
given (a seam: unit tests hand in a table of their own, with no root and no kernel mounts)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from typing import Protocol

from orlop.host import mounts

log = logging.getLogger(__name__)

# FS_IOC_SHUTDOWN (_IOR('X', 125, __u32)), ext4 and xfs; NOLOGFLUSH: neither dirty data nor
# the journal is written, so nothing more reaches the device from this mount.
FS_IOC_SHUTDOWN = 0x8004587D
SHUTDOWN_NOLOGFLUSH = 2


class Mounter(Protocol):
    def mounted(self, target: str) -> str | None:
        """The source (device) of what is mounted at `target`, or None."""

    def unmount(self, target: str, lazy_if_busy: bool = False) -> None:
        """Unmount `target`; nothing mounted there is not an error."""

    def shut_down(self, target: str) -> bool:
        """Stop the filesystem at `target` writing to its device, dropping what it has not
        written yet; False where it did not (nothing mounted there, a filesystem without the
        ioctl, or one mounted elsewhere too): its unmount may still write."""


class HostMounter:
    """The real one: this host's mount table, umount(8)."""

    def mounted(self, target: str) -> str | None:
        entry = mounts.mount_at(os.path.realpath(target))
        return entry.source if entry is not None else None

    def unmount(self, target: str, lazy_if_busy: bool = False) -> None:
        mounts.unmount(target, lazy_if_busy=lazy_if_busy)

    def shut_down(self, target: str) -> bool:
        real = os.path.realpath(target)
        table = mounts.mount_table()
        here = next((e for e in reversed(table) if e.mountpoint == real), None)
        if here is None:
            return False
        also = [e.mountpoint for e in table if e.source == here.source and e.mountpoint != real]
        if also:
            # One kernel mounts a device once: the other mountpoints are the same filesystem
            # (a bind mount, or another daemon's mount on a test host), which a shutdown
            # would stop too. Left to the unmount, as without fencing.
            log.warning(
                "not shutting %s down: its filesystem is mounted at %s too", target, also[0]
            )
            return False
        try:
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            log.warning("cannot open %s to shut its filesystem down: %s", target, error)
            return False
        try:
            fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", SHUTDOWN_NOLOGFLUSH))
        except OSError as error:
            if error.errno not in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
                log.warning("shutting the filesystem at %s down: %s", target, error)
            return False
        finally:
            os.close(fd)
        return True
