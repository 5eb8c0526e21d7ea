"""The filesystem layer every block provider shares: detect, format, mount, grow.

Public API (stable; the EBS and other providers use it through `BlockBackend`):

* `OPTIONS` — the per-volume options this layer adds: `fs`, `mkfs_options`, `mount_options`,
  and `volume_mode` (`block`: a raw device this layer never formats or mounts; `is_raw`).
* `check(options)` — reject a bad combination before anything is allocated (`InvalidOption`).
* `detect(device)` — the filesystem on a device, None if blkid finds none *and* the device
  reads; raises if it holds something else (a partition table, LVM, swap) or cannot be read
  (an I/O error, a timeout: blkid then says "nothing found"): Orlop never formats over that.
* `require_blank(device)` — raise unless the device reads back blank (its first MiB zeros).
* `wipe(device)`, `make(device, fs, mkfs_options, force)` — format (only blank devices).
* `mount(device, target, fs, mount_options)` — `nodev,nosuid` (unless the driver's admin
  allows `dev`/`suid` and the volume asks); options from an allow-list.
* `grow(target)` — grow the mounted filesystem at `target` to its device's size, online;
  `grow_unmounted(device, fs)` — the same before mounting, where the tools allow it (ext4).
* `usage(target)` — size, used and free bytes via statvfs.

Every option value is checked against an allow-list here and reaches the commands as one
argument each, never through a shell.
"""

from __future__ import annotations

import errno
import mmap
import os
import shlex
import threading

from orlop.backends.base import Check, filesystem_check, tool_check
from orlop.backends.block import allowlists
from orlop.core.model import BackendError, InvalidOption, Usage
from orlop.core.options import Option, format_size, one_of
from orlop.host import mounts
from orlop.host.run import CommandError, run
from orlop.host.tree import filesystem_usage

FILESYSTEMS = ("ext4", "xfs", "btrfs")
VOLUME_MODES = ("filesystem", "block")
DEFAULT_FS = "ext4"
# Below these mkfs refuses (xfsprogs ≥ 5.19: 300 MB; btrfs: 109 MiB) or the result is useless.
MIN_SIZE = {"ext4": 16 * 1024**2, "xfs": 300 * 1024**2, "btrfs": 128 * 1024**2}
# Always on: a volume must not carry set-user-ID programs or device nodes onto the host.
SAFE_MOUNT_OPTIONS = ("nodev", "nosuid")

MKFS_TIMEOUT = 600.0
GROW_TIMEOUT = 600.0
BLKID_TIMEOUT = 30.0
# Every signature mkfs.{ext4,xfs,btrfs} writes (and MBR, GPT, LVM, swap, LUKS) lies in the first
# MiB; md 1.0 and the GPT backup lie in the last one. A blank device reads both back.
PROBE_BYTES = 1024**2
READ_TIMEOUT = 30.0
_MKFS = {"ext4": "mkfs.ext4", "xfs": "mkfs.xfs", "btrfs": "mkfs.btrfs"}
_FORCE = {"ext4": "-F", "xfs": "-f", "btrfs": "-f"}


def _canonical_mkfs_options(value: str) -> str:
    return shlex.join(_split_mkfs(value))


def _canonical_mount_options(value: str) -> str:
    return ",".join(_split_mount(value))


OPTIONS = [
    Option("fs", one_of(*FILESYSTEMS), "filesystem made on first use: ext4 (default), xfs, btrfs"),
    Option(
        "mkfs_options",
        _canonical_mkfs_options,
        "extra mkfs arguments from an allow-list, e.g. '-m 0 -L data' (ext4)",
    ),
    Option(
        "mount_options",
        _canonical_mount_options,
        "mount options from an allow-list, comma-separated, e.g. noatime,discard",
    ),
    Option(
        "volume_mode",
        one_of(*VOLUME_MODES),
        "block: a raw block device, never formatted or mounted (CSI's block access type); "
        "filesystem (default)",
    ),
]


def fs_of(options: dict[str, str]) -> str:
    return options.get("fs", DEFAULT_FS)


def is_raw(options: dict[str, str]) -> bool:
    """A raw block volume (`volume_mode=block`): its device is the volume; no filesystem."""
    return options.get("volume_mode") == "block"


# checking ---------------------------------------------------------------------------------
def check(options: dict[str, str], size: int | None = None, allow_suid_dev: bool = False) -> None:
    """Reject mkfs/mount options the chosen filesystem does not allow, or a size too small."""
    fs = fs_of(options)
    allowlists.check_mkfs(fs, _split_mkfs(options.get("mkfs_options", "")))
    allowlists.check_mount(fs, _split_mount(options.get("mount_options", "")), allow_suid_dev)
    if size is not None and size < MIN_SIZE[fs]:
        raise InvalidOption(
            f"size {format_size(size)} is too small for {fs}: "
            f"it needs at least {format_size(MIN_SIZE[fs])}"
        )


def _split_mkfs(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as error:
        raise ValueError(f"{value!r} cannot be split into arguments: {error}") from None


def _split_mount(value: str) -> list[str]:
    seen: list[str] = []
    for option in value.split(","):
        option = option.strip()
        if option and option not in seen:
            seen.append(option)
    return seen


# detect and format ------------------------------------------------------------------------
def probe(device: str) -> dict[str, str]:
    """Every signature blkid finds on `device` (low-level probe, no cache); {} when it finds
    none — which blkid also says when its reads fail: `detect` reads the device itself."""
    result = run(["blkid", "-p", "-o", "export", "--", device], timeout=BLKID_TIMEOUT, check=False)
    if result.returncode == 2:
        return {}
    if result.returncode != 0:
        raise BackendError(
            f"cannot tell what {device} holds (blkid exit {result.returncode}: "
            f"{result.stderr.strip() or 'ambivalent result'}); refusing to format it"
        )
    found = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        found[key] = value
    return found


def detect(device: str) -> str | None:
    """The filesystem type on `device`, or None if blkid finds no signature and the device
    reads (its first and last MiB, within `READ_TIMEOUT`).

    blkid alone says "nothing found" when its reads fail, which would format over data: an
    unreadable device raises, and so does anything but ext4/xfs/btrfs (a partition table,
    LVM, swap, an unknown filesystem). `make` then formats only a device that reads back blank.
    """
    found = probe(device)
    fstype = found.get("TYPE")
    if fstype in FILESYSTEMS:
        return fstype
    if found:
        what = fstype or (f"a {found['PTTYPE']} partition table" if "PTTYPE" in found else "data")
        raise BackendError(
            f"{device} holds {what}, not an ext4, xfs or btrfs filesystem: Orlop mounts only "
            "those and never formats a device that holds something"
        )
    read_ends(device)
    return None


def require_blank(device: str) -> None:
    """Raise unless `device` reads back blank: its first MiB all zeros (read without error).
    Every filesystem's superblock lies there, so zeros there mean no data is lost."""
    head, _ = read_ends(device)
    if head.count(0) != len(head):
        raise BackendError(
            f"{device} holds data in its first MiB that blkid recognises as no filesystem: "
            "Orlop formats only a blank (all-zero) device, never over data. If it is really "
            f"unused, zero it (blkdiscard -z {device}) and mount again"
        )


def read_ends(device: str) -> tuple[bytes, bytes]:
    """The first and last `PROBE_BYTES` of `device`, read past the page cache; an I/O error
    or no answer within `READ_TIMEOUT` raises (a stalled disk must not look blank)."""
    result: list[tuple[bytes, bytes]] = []
    failure: list[OSError] = []

    def read() -> None:
        try:
            result.append(_read_ends(device))
        except OSError as error:
            failure.append(error)

    # A read stuck in the kernel cannot be interrupted: it is left to its (daemon) thread.
    reader = threading.Thread(target=read, name=f"read-ends {device}", daemon=True)
    reader.start()
    reader.join(READ_TIMEOUT)
    if failure:
        raise BackendError(
            f"cannot read {device} ({failure[0].strerror or failure[0]}): refusing to treat it "
            "as blank or format it; it is mounted once it reads again (check the disk)"
        )
    if not result:
        raise BackendError(
            f"{device} did not answer a read within {READ_TIMEOUT:g}s: refusing to treat it as "
            "blank or format it; it is mounted once it reads again (check the disk)"
        )
    return result[0]


def _read_ends(device: str) -> tuple[bytes, bytes]:
    try:
        fd = os.open(device, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)  # no O_DIRECT here: the cache
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        length = min(PROBE_BYTES, size)
        tail = max(0, size - length) // 4096 * 4096
        return _read_at(fd, 0, length), _read_at(fd, tail, size - tail)
    finally:
        os.close(fd)


def _read_at(fd: int, offset: int, length: int) -> bytes:
    buffer = mmap.mmap(-1, max(length, 1))  # page-aligned, as O_DIRECT needs
    try:
        done = 0
        with memoryview(buffer) as view:
            while done < length:
                count = os.preadv(fd, [view[done:length]], offset + done)
                if count == 0:
                    raise OSError(errno.EIO, f"short read at byte {offset + done}")
                done += count
        return bytes(buffer[:length])
    finally:
        buffer.close()


def wipe(device: str) -> None:
    """Erase every signature on `device`: only for a format of ours that a crash interrupted."""
    run(["wipefs", "--all", "--quiet", "--", device], timeout=BLKID_TIMEOUT)


def make(device: str, fs: str, mkfs_options: str = "", force: bool = False) -> None:
    """Format `device` as `fs`: only one that `require_blank` passed, or with `force` after
    `wipe` of our own interrupted format."""
    extra = _split_mkfs(mkfs_options)
    allowlists.check_mkfs(fs, extra)
    args = [_MKFS[fs], "-q"]
    if force:
        args.append(_FORCE[fs])
    run([*args, *extra, "--", device], timeout=MKFS_TIMEOUT)


# mount, grow, usage -----------------------------------------------------------------------
def mount(
    device: str, target: str, fs: str, mount_options: str = "", allow_suid_dev: bool = False
) -> None:
    """Mount `device` at `target` with allow-listed options, nodev,nosuid unless the driver
    allows `dev`/`suid` and the volume asks for them."""
    extra = _split_mount(mount_options)
    allowlists.check_mount(fs, extra, allow_suid_dev)
    safe = [o for o in SAFE_MOUNT_OPTIONS if o.removeprefix("no") not in extra]
    mounts.mount(device, target, fs, [*safe, *(o for o in extra if o not in safe)])


def unmount(target: str) -> None:
    mounts.unmount(target)


def mounted_fs(target: str) -> tuple[str, str] | None:
    """(device, fstype) of the filesystem mounted at `target`, or None."""
    entry = mounts.mount_at(os.path.realpath(target))
    return (entry.source, entry.fstype) if entry is not None else None


def grow(target: str) -> None:
    """Grow the filesystem mounted at `target` to fill its device, online."""
    found = mounted_fs(target)
    if found is None:
        raise BackendError(f"nothing is mounted at {target}: cannot grow its filesystem")
    device, fstype = found
    if fstype == "ext4":
        args = ["resize2fs", device]
    elif fstype == "xfs":
        args = ["xfs_growfs", "-d", target]
    elif fstype == "btrfs":
        args = ["btrfs", "filesystem", "resize", "max", target]
    else:
        raise BackendError(f"cannot grow a {fstype} filesystem (at {target})")
    try:
        run(args, timeout=GROW_TIMEOUT)
    except CommandError as error:
        if fstype == "ext4" and "Permission denied" in error.stderr:
            raise BackendError(
                f"cannot grow the ext4 filesystem at {target} online: the kernel allows that "
                "only to a process with CAP_SYS_RESOURCE, which this daemon lacks (run it "
                "with full root capabilities); it grows at the next mount instead"
            ) from None
        raise BackendError(f"growing the {fstype} filesystem at {target}: {error}") from None


def grow_unmounted(device: str, fstype: str) -> bool:
    """Grow the unmounted filesystem on `device` to the device's size where its tools can
    (ext4); False when only an online grow exists (xfs, btrfs: grow after mounting)."""
    if fstype != "ext4":
        return False
    # resize2fs insists on a freshly checked filesystem when it is not mounted.
    check = run(["e2fsck", "-f", "-p", device], timeout=GROW_TIMEOUT, check=False)
    if check.returncode not in (0, 1):
        raise BackendError(
            f"e2fsck found problems it could not repair on {device} (exit {check.returncode}): "
            f"{check.stdout.strip()[-500:]}; not growing it"
        )
    run(["resize2fs", device], timeout=GROW_TIMEOUT)
    return True


def usage(target: str) -> Usage:
    return filesystem_usage(target)


def host_checks() -> list[Check]:
    checks = [
        tool_check("mount", "mount"),
        tool_check("umount", "mount"),
        tool_check("blkid", "util-linux"),
        tool_check("wipefs", "util-linux"),
        tool_check("mkfs.ext4", "e2fsprogs"),
        tool_check("resize2fs", "e2fsprogs"),
        tool_check("e2fsck", "e2fsprogs"),
        tool_check("mkfs.xfs", "xfsprogs"),
        tool_check("xfs_growfs", "xfsprogs"),
        tool_check("mkfs.btrfs", "btrfs-progs"),
        tool_check("btrfs", "btrfs-progs"),
    ]
    checks += [filesystem_check(fs, f"needed for fs={fs} block volumes") for fs in FILESYSTEMS]
    return checks
