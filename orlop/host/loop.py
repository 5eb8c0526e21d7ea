"""Loop devices: attach an image file, find the devices backing a file, refresh capacity.

A loop device is found by its backing file (sysfs), never remembered only in memory: after a
crash the device of an image is still known, so nothing leaks.
"""

from __future__ import annotations

import glob
import os

from orlop.host.run import CommandError, run

LOSETUP_TIMEOUT = 30.0
_SYS_BLOCK = "/sys/block"


def _backing_file(device_name: str) -> str | None:
    try:
        with open(os.path.join(_SYS_BLOCK, device_name, "loop", "backing_file")) as file:
            return file.read().rstrip("\n")
    except OSError:
        return None  # not a loop device, or no file attached (any more)


def devices_for(image: str) -> list[str]:
    """Every loop device (/dev/loopN) whose backing file is `image`, in device order."""
    wanted = os.path.realpath(image)
    found = []
    for entry in glob.glob(os.path.join(_SYS_BLOCK, "loop*")):
        name = os.path.basename(entry)
        backing = _backing_file(name)
        if backing is not None and backing.removesuffix(" (deleted)") == wanted:
            found.append(f"/dev/{name}")
    return sorted(found, key=lambda device: int(device.removeprefix("/dev/loop") or 0))


def attach(image: str, direct_io: bool = True) -> str:
    """A loop device for `image`: the existing one if there is one, else a new one."""
    existing = devices_for(image)
    if existing:
        return existing[0]
    # 512-byte sectors always: otherwise the loop driver takes the file's direct-I/O
    # alignment, which xfs raises to 4 KiB once a file shares blocks (a reflink snapshot),
    # and a filesystem made with 1 KiB blocks would no longer mount. Such a file is then
    # read through the page cache instead of with O_DIRECT.
    args = ["losetup", "--find", "--show", "--nooverlap", "--sector-size", "512"]
    if direct_io:
        # The loop driver then reads and writes the image with O_DIRECT: no second copy of
        # every block in the host's page cache, and a flush reaches the disk.
        args.append("--direct-io=on")
    result = run([*args, "--", image], timeout=LOSETUP_TIMEOUT)
    return result.stdout.strip()


def detach(device: str) -> None:
    """Release `device`; a device that is already free is not an error."""
    name = os.path.basename(device)
    if _backing_file(name) is None:
        return
    try:
        # On a device still open (mounted) this only sets autoclear: the kernel frees it at
        # the last close. Callers unmount first, so that is the rare case.
        run(["losetup", "--detach", device], timeout=LOSETUP_TIMEOUT)
    except CommandError:
        if _backing_file(name) is not None:
            raise


def detach_all(image: str) -> None:
    for device in devices_for(image):
        detach(device)


def refresh_capacity(device: str) -> None:
    """Make the loop device see its backing file's new size (after the file grew)."""
    run(["losetup", "--set-capacity", device], timeout=LOSETUP_TIMEOUT)


def size_of(device: str) -> int:
    """Bytes of a block device, from sysfs (512-byte sectors)."""
    with open(os.path.join(_SYS_BLOCK, os.path.basename(device), "size")) as file:
        return int(file.read()) * 512
