"""Bad options for block volumes: a clear error naming what is allowed, and nothing left."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.loopfile.provider import LoopFileBackend
from orlop.core.model import BackendError, InvalidOption
from orlop.host.mounts import mount_at
from tests.support.block import cleanup, leftovers
from tests.support.harness import Harness

BAD = [
    (
        {"size": "0"},
        "option size: '0' is outside the sizes a loop-file volume can have: 16M or more",
    ),
    ({"size": "-1G"}, "option size: '-1G' is not a size"),
    ({"size": "10X"}, r"option size: '10X' is not a size: use a number with an optional unit"),
    ({"size": "100T", "preallocate": "true"}, r"needs 100T but the state directory .* free"),
    ({"preallocate": "maybe"}, "not a boolean: use true or false"),
    ({"fs": "zfs"}, "'zfs' is not allowed: use one of ext4, xfs, btrfs"),
    ({"fs": "xfs", "size": "256M"}, r"size 256M is too small for xfs: it needs at least 300M"),
    ({"mount_options": "suid"}, "mount option suid is not allowed: .*always mounted nodev,nosuid"),
    ({"mount_options": "noatime,dev"}, "mount option dev is not allowed"),
    ({"fs": "btrfs", "mount_options": "subvol=/etc"}, "names a host path"),
    ({"fs": "btrfs", "mount_options": "device=/dev/sda"}, "names a host path"),
    ({"mount_options": "errors=panic"}, "has a value ext4 does not allow"),
    ({"mount_options": "bind"}, "'bind' is not allowed for ext4: allowed are .*noatime"),
    ({"mount_options": "data"}, "needs a value"),
    ({"mkfs_options": "-F"}, "never forces a format over existing data"),
    ({"fs": "xfs", "size": "320M", "mkfs_options": "-f"}, "never forces"),
    ({"mkfs_options": "-d /etc/passwd"}, "'-d' is not allowed for ext4: allowed are"),
    ({"fs": "xfs", "size": "320M", "mkfs_options": "-d file,name=/x"}, "needs an allowed value"),
    ({"mkfs_options": "-L 'two words'"}, "-L for ext4 needs an allowed value"),
    ({"mkfs_options": "-m"}, "needs an allowed value, got nothing"),
    ({"mkfs_options": "-L 'unbalanced"}, "cannot be split into arguments"),
    ({"colour": "red"}, "unknown option colour: allowed options are from_backup, from_snapshot"),
]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    root = str(tmp_path / "driver")
    harness = Harness(
        LoopFileBackend(BackendContext("blk", root)), "blk", str(tmp_path / "orlop.db")
    )
    try:
        yield harness
    finally:
        harness.close()
        cleanup(root)


@pytest.mark.parametrize(("options", "message"), BAD, ids=[str(o) for o, _ in BAD])
def test_bad_options_leave_nothing(
    harness: Harness, tmp_path: Path, options: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidOption, match=message):
        harness.create("bad", **options)
    assert harness.names() == []
    root = str(tmp_path / "driver")
    assert os.listdir(os.path.join(root, "images")) == []
    assert leftovers(root) == {"mounts": [], "loop_devices": []}


def test_driver_default_size_applies(harness: Harness) -> None:
    volume = harness.create("defaulted")
    assert harness.service.backend_facts(volume)["size"] == 10 * 1024**3
    harness.remove("defaulted")


def test_a_failed_format_leaves_nothing_attached(harness: Harness, tmp_path: Path) -> None:
    """mkfs refuses an option combination: the mount fails cleanly, the volume stays removable."""
    # -b 1024 with -N beyond what 16M can hold: mke2fs itself refuses.
    harness.create("v", size="16M", mkfs_options="-b 1024 -N 4000000000")
    with pytest.raises(BackendError, match=r"mkfs\.ext4"):
        harness.mount("v", "c1")
    root = str(tmp_path / "driver")
    assert leftovers(root) == {"mounts": [], "loop_devices": []}
    assert harness.get("v").mounts == 0
    harness.remove("v")
    assert harness.names() == []
    assert os.listdir(os.path.join(root, "images")) == []


def test_sparse_size_beyond_what_the_host_filesystem_holds(
    harness: Harness, tmp_path: Path
) -> None:
    root = str(tmp_path / "driver")
    entry = mount_at(_mount_point_of(root))
    if entry is None or entry.fstype != "ext4":
        pytest.skip("the 16T file size limit is ext4's; the state directory is elsewhere")
    with pytest.raises(BackendError, match="larger than the biggest file"):
        harness.create("huge", size="100T")
    assert harness.names() == []
    assert os.listdir(os.path.join(root, "images")) == []


def _mount_point_of(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path
