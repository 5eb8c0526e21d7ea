"""Block-volume test helpers: find, and clean up, loop devices and mounts below a directory."""

from __future__ import annotations

import contextlib
import glob
import os

from orlop.host import loop
from orlop.host.mounts import mounts_under, unmount


def loop_devices_under(root: str) -> list[str]:
    """Loop devices whose backing file lies below `root`."""
    prefix = os.path.realpath(root).rstrip("/") + "/"
    found = []
    for entry in glob.glob("/sys/block/loop*/loop/backing_file"):
        with contextlib.suppress(OSError), open(entry) as file:
            backing = file.read().strip().removesuffix(" (deleted)")
            if backing.startswith(prefix):
                found.append("/dev/" + entry.split("/")[3])
    return sorted(found)


def leftovers(root: str) -> dict[str, list[str]]:
    """What a test left behind below `root`: mounts and loop devices (both should be empty)."""
    return {"mounts": mounts_under(root), "loop_devices": loop_devices_under(root)}


def cleanup(root: str) -> None:
    """Unmount everything below `root` and release its loop devices, even if busy."""
    for mounted in mounts_under(root):
        with contextlib.suppress(Exception):
            unmount(mounted, lazy_if_busy=True)
    for device in loop_devices_under(root):
        with contextlib.suppress(Exception):
            loop.detach(device)


def has_cap_sys_resource() -> bool:
    """ext4 grows online only with CAP_SYS_RESOURCE, which some sandboxes drop."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 24))
    return False
