"""Freeze a mounted filesystem while its device is copied (what `fsfreeze` does).

A frozen filesystem has flushed its journal and dirty data and blocks new writes, so a copy
of the device taken meanwhile is crash-consistent, as a power cut would leave it. A frozen
filesystem blocks every writer on the host, so the freeze lasts only as long as the copy
(a reflink: milliseconds), and `thaw` is idempotent for crash recovery: a daemon killed
while it held a freeze thaws at the next start.

The FIFREEZE/FITHAW ioctls on the mount point, as util-linux's fsfreeze issues them: no
process to start, which would double a reflink snapshot's time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from orlop.core.model import BackendError

FIFREEZE = 0xC0045877  # _IOWR('X', 119, int): linux/fs.h
FITHAW = 0xC0045878  # _IOWR('X', 120, int)


def _ioctl(mountpoint: str, request: int) -> None:
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, request, 0)
    finally:
        os.close(fd)


def freeze(mountpoint: str) -> None:
    try:
        _ioctl(mountpoint, FIFREEZE)
    except OSError as error:
        raise BackendError(f"freezing {mountpoint}: {error.strerror or error}") from None


def thaw(mountpoint: str) -> None:
    """Unfreeze; a filesystem that is not frozen is not an error."""
    try:
        _ioctl(mountpoint, FITHAW)
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: not frozen
            raise BackendError(f"thawing {mountpoint}: {error.strerror or error}") from None


@contextlib.contextmanager
def frozen(mountpoint: str | None) -> Iterator[None]:
    """Freeze `mountpoint` for the block; None (not mounted) freezes nothing."""
    if mountpoint is None:
        yield
        return
    freeze(mountpoint)
    try:
        yield
    finally:
        thaw(mountpoint)
