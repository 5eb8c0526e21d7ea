"""Real filesystems on loop devices, to use as a daemon's state directory.

`HostFilesystem("xfs")` makes a sparse image, formats it (xfs with reflink=1, btrfs, ext4),
attaches a loop device and mounts it on a temporary directory; `destroy()` undoes all of it,
even under mounts a failed test left inside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile

from tests.support.block import cleanup

MKFS = {
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}


class HostFilesystem:
    def __init__(self, fstype: str, size: int = 4 * 1024**3) -> None:
        self.fstype = fstype
        self.root = tempfile.mkdtemp(prefix=f"orlop-hostfs-{fstype}-")
        self.image = os.path.join(self.root, "fs.img")
        self.path = os.path.join(self.root, "mnt")
        os.mkdir(self.path)
        with open(self.image, "wb") as image:
            image.truncate(size)
        self.device = ""
        try:
            self.device = _run("losetup", "--find", "--show", self.image).strip()
            _run(*MKFS[fstype], self.device)
            _run("mount", self.device, self.path)
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        cleanup(self.path)  # the daemon's mounts and loop devices inside first
        with contextlib.suppress(subprocess.CalledProcessError):
            if os.path.ismount(self.path):
                _run("umount", "--lazy", self.path)
        if self.device:
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("losetup", "-d", self.device)
        shutil.rmtree(self.root, ignore_errors=True)


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=120).stdout
