"""Copies that share blocks where the filesystem can: reflinks (FICLONE), else sparse copies.

`snapshot_method(directory)` says what a copy under `directory` gets on this host:

    "btrfs subvolume"   directory trees are subvolume snapshots (instant), files reflinks
    "reflink"           files are reflinked (xfs with reflink=1, btrfs, …): instant, shared blocks
    "copy"              a byte copy that keeps holes (sparse), with progress

Every copy here reports progress through a `Progress` callback (bytes done, bytes total), so
the CLI can show a bar, and never leaves a partial file at its target: callers write to a
temporary name and rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from collections.abc import Callable

from orlop.host import btrfs
from orlop.host.run import run

FICLONE = 0x40049409  # _IOW(0x94, 9, int): linux/fs.h
COPY_CHUNK = 8 * 1024 * 1024
COPY_TIMEOUT = 24 * 3600.0
PROGRESS_INTERVAL = 0.5  # a plain copy of a big tree takes as long as it takes

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


def _no_progress(done: int, total: int) -> None:
    return None


def can_reflink(directory: str) -> bool:
    """Whether files under `directory` can be reflinked: tried on two scratch files."""
    source = os.path.join(directory, f".orlop-reflink-probe-{os.getpid()}")
    target = f"{source}.clone"
    try:
        with open(source, "wb") as file:
            file.write(b"orlop")
        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError:
        return False
    finally:
        for path in (source, target):
            with contextlib.suppress(OSError):
                os.unlink(path)


def snapshot_method(directory: str) -> str:
    """What a snapshot of a directory volume under `directory` gets on this host."""
    if btrfs.is_btrfs(directory):
        return "btrfs subvolume"
    return "reflink" if can_reflink(directory) else "copy"


def clone_file(source: str, target: str, progress: Progress = _no_progress) -> str:
    """Copy the file `source` to `target` (created, 0600): a reflink if the filesystem can,
    else a sparse byte copy. Returns "reflink" or "copy"."""
    size = os.path.getsize(source)
    with open(source, "rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                fcntl.ioctl(fd, FICLONE, src.fileno())
                method = "reflink"
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                    raise
                _sparse_copy(src.fileno(), fd, size, progress)
                method = "copy"
            os.fsync(fd)
        finally:
            os.close(fd)
    progress(size, size)
    return method


def _sparse_copy(src: int, dst: int, size: int, progress: Progress) -> None:
    """Copy only the data extents (SEEK_DATA/SEEK_HOLE): holes stay holes."""
    os.ftruncate(dst, size)
    offset = 0
    while offset < size:
        try:
            data = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:
                break  # only a hole is left
            raise
        hole = os.lseek(src, data, os.SEEK_HOLE)
        position = data
        while position < hole:
            length = min(COPY_CHUNK, hole - position)
            copied = os.copy_file_range(src, dst, length, position, position)
            if copied == 0:
                break
            position += copied
            progress(position, size)
        offset = hole


def tree_bytes(directory: str) -> int:
    """Bytes of regular files below `directory` (for a progress total)."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return total


def copy_tree(source: str, target: str, progress: Progress = _no_progress) -> None:
    """Copy the tree `source` into the existing, empty directory `target`: owners, modes,
    times, xattrs, hard links and holes kept; files reflinked where the filesystem can."""
    total = tree_bytes(source)
    progress(0, total)
    done = threading.Event()

    def watch() -> None:  # cp says nothing while it works: measure what it has written
        while not done.wait(PROGRESS_INTERVAL):
            progress(min(tree_bytes(target), total), total)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        # cp knows every file type, ACLs and hard links; --reflink=auto falls back to a copy.
        run(
            ["cp", "-a", "--reflink=auto", "--sparse=auto", "--", f"{source}/.", target],
            timeout=COPY_TIMEOUT,
        )
    finally:
        done.set()
        watcher.join()
    progress(total, total)
