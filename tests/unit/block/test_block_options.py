"""Block-volume options without root: allow-lists, canonical forms, the backend's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends import backend_class
from orlop.backends.base import Backend, BackendContext, Resizable
from orlop.backends.block import allowlists, filesystem
from orlop.backends.loopfile.provider import LoopFileBackend
from orlop.config import EMBEDDED_DEFAULT
from orlop.core.model import InvalidOption


def test_registry_and_embedded_default(tmp_path: Path) -> None:
    assert backend_class("loopfile") is LoopFileBackend
    driver = EMBEDDED_DEFAULT["drivers"]["orlop-block"]
    assert driver["backend"] == "loopfile"
    backend = LoopFileBackend(BackendContext("orlop-block", str(tmp_path)))
    assert backend.options.validate({}, driver["options"]) == {
        "size": str(10 * 1024**3),
        "fs": "ext4",
    }


def test_backend_shape(tmp_path: Path) -> None:
    backend = LoopFileBackend(BackendContext("b", str(tmp_path)))
    assert isinstance(backend, Backend) and isinstance(backend, Resizable)
    assert backend.kind == "loopfile"
    assert backend.capabilities.resize and backend.capabilities.scope == "local"
    assert backend.capabilities.snapshot and backend.capabilities.restore
    assert sorted(backend.options.options) == [
        "from_backup",
        "from_snapshot",
        "from_volume",
        "fs",
        "mkfs_options",
        "mount_options",
        "preallocate",
        "size",
        "snapshot_schedule",
        "volume_mode",
    ]
    names = {check.name for check in LoopFileBackend.host_checks()}
    assert {"command losetup", "command mkfs.xfs", "command blkid"} <= names


def test_canonical_forms(tmp_path: Path) -> None:
    backend = LoopFileBackend(BackendContext("b", str(tmp_path)))
    canonical = backend.options.validate(
        {"size": "1G", "mount_options": " noatime, discard,noatime", "mkfs_options": "-m  0"}
    )
    assert canonical == {
        "size": str(1024**3),
        "mount_options": "noatime,discard",
        "mkfs_options": "-m 0",
    }
    # Docker repeats a Create with the same options spelled differently: equal once canonical.
    assert backend.options.validate({"size": "1024MiB"})["size"] == str(1024**3)


@pytest.mark.parametrize(
    ("fs", "arguments"),
    [
        ("ext4", ["-m", "0", "-L", "data", "-E", "lazy_itable_init=1,nodiscard", "-O", "^quota"]),
        ("ext4", ["-T", "largefile", "-I", "256", "-j"]),
        ("xfs", ["-m", "reflink=1,crc=1", "-l", "size=64m,lazy-count=1", "-K", "-L", "x"]),
        ("btrfs", ["--csum", "xxhash", "-m", "dup", "-d", "single", "-O", "no-holes"]),
        ("btrfs", ["--csum=sha256"]),
    ],
)
def test_mkfs_allowed(fs: str, arguments: list[str]) -> None:
    allowlists.check_mkfs(fs, arguments)


@pytest.mark.parametrize(
    ("fs", "arguments", "message"),
    [
        ("ext4", ["-F"], "never forces"),
        ("btrfs", ["--force"], "never forces"),
        ("ext4", ["-E", "root_owner=0:0"], "needs an allowed value"),
        ("ext4", ["-L", "a" * 17], "needs an allowed value"),
        ("xfs", ["-L", "thirteenchars"], "needs an allowed value"),
        ("xfs", ["-n", "ftype=0"], "needs an allowed value"),
        ("xfs", ["-d", "file,name=/etc/passwd"], "needs an allowed value"),
        ("btrfs", ["/dev/sdb"], "not allowed for btrfs"),
        ("ext4", ["-m"], "got nothing"),
        ("ext4", ["-O", "^has_journal"], "needs an allowed value"),
    ],
)
def test_mkfs_refused(fs: str, arguments: list[str], message: str) -> None:
    with pytest.raises(InvalidOption, match=message):
        allowlists.check_mkfs(fs, arguments)


@pytest.mark.parametrize(
    ("fs", "options"),
    [
        ("ext4", ["noatime", "data=journal", "commit=30", "errors=remount-ro", "nodev"]),
        ("xfs", ["inode64", "logbsize=256k", "allocsize=64m", "prjquota"]),
        ("btrfs", ["compress=zstd:3", "compress", "discard=async", "discard", "space_cache=v2"]),
    ],
)
def test_mount_allowed(fs: str, options: list[str]) -> None:
    allowlists.check_mount(fs, options)


@pytest.mark.parametrize(
    ("fs", "option", "message"),
    [
        ("ext4", "suid", "always mounted nodev,nosuid"),
        ("ext4", "dev", "always mounted nodev,nosuid"),
        ("btrfs", "subvol=/", "names a host path"),
        ("ext4", "journal_path=/dev/sda1", "names a host path"),
        ("ext4", "errors=panic", "does not allow"),
        ("xfs", "data=journal", "not allowed for xfs"),
        ("ext4", "commit", "needs a value"),
        ("ext4", "loop", "not allowed for ext4"),
        ("ext4", "discard=async", "does not allow"),
        ("btrfs", "compress=bogus", "does not allow"),
    ],
)
def test_mount_refused(fs: str, option: str, message: str) -> None:
    with pytest.raises(InvalidOption, match=message):
        allowlists.check_mount(fs, [option])


def test_mount_suid_dev_only_when_the_driver_allows() -> None:
    allowlists.check_mount("ext4", ["suid", "dev"], allow_suid_dev=True)
    with pytest.raises(InvalidOption):
        allowlists.check_mount("ext4", ["suid"], allow_suid_dev=False)


def test_minimum_sizes() -> None:
    filesystem.check({"fs": "xfs"}, 300 * 1024**2)
    with pytest.raises(InvalidOption, match="too small for btrfs: it needs at least 128"):
        filesystem.check({"fs": "btrfs"}, 100 * 1024**2)
