"""fsfreeze: hold writes to a mounted filesystem while its device is copied.

A frozen filesystem has flushed its journal and dirty data and blocks new writes, so a copy
of the device taken meanwhile is crash-consistent, as a power cut would leave it. A frozen
filesystem blocks every writer on the host, so the freeze lasts only as long as the copy
(a reflink: milliseconds), and `thaw` is idempotent for crash recovery: a daemon killed
while it held a freeze thaws at the next start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from orlop.host.run import CommandError, run

FREEZE_TIMEOUT = 60.0


def freeze(mountpoint: str) -> None:
    run(["fsfreeze", "--freeze", mountpoint], timeout=FREEZE_TIMEOUT)


def thaw(mountpoint: str) -> None:
    """Unfreeze; a filesystem that is not frozen is not an error."""
    try:
        run(["fsfreeze", "--unfreeze", mountpoint], timeout=FREEZE_TIMEOUT)
    except CommandError as error:
        if "Invalid argument" not in error.stderr:
            raise


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
