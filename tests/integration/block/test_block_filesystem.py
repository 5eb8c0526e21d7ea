"""The shared filesystem layer on real loop devices: detect, format once, mount safely, grow."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.block import filesystem
from orlop.backends.loopfile.provider import LoopFileBackend
from orlop.core.model import BackendError, InvalidOption, State
from orlop.host import loop
from orlop.host.mounts import mount_at
from orlop.host.run import run
from tests.support.block import has_cap_sys_resource, leftovers
from tests.support.harness import Harness

SIZES = {"ext4": "64M", "xfs": "320M", "btrfs": "160M"}
MiB = 1024 * 1024


@contextlib.contextmanager
def attached(image: str) -> Iterator[str]:
    device = loop.attach(image)
    try:
        yield device
    finally:
        loop.detach(device)


def sha256(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


@pytest.mark.parametrize("fs", filesystem.FILESYSTEMS)
def test_first_mount_formats_with_safe_options(harness: Harness, root: str, fs: str) -> None:
    label = {"ext4": "-L orlopdata -m 0", "xfs": "-L orlopdata", "btrfs": "-L orlopdata"}[fs]
    harness.create("v", size=SIZES[fs], fs=fs, mkfs_options=label, mount_options="noatime")
    image = os.path.join(root, "images", "v.img")
    assert filesystem.probe(image) == {}, "created, not yet formatted: formatting is first use"
    path = harness.mount("v", "c1")
    entry = mount_at(path)
    assert entry is not None and entry.fstype == fs
    flags = set(entry.options.split(","))
    assert {"nosuid", "nodev", "noatime"} <= flags
    assert harness.get("v").state == State.ATTACHED
    with open(os.path.join(path, "data"), "w") as data:
        data.write(fs)
    harness.unmount("v", "c1")
    assert leftovers(root) == {"mounts": [], "loop_devices": []}
    found = filesystem.probe(image)
    assert found["TYPE"] == fs and found["LABEL"] == "orlopdata"
    # Second mount: detected, not formatted again (the data is still there).
    path = harness.mount("v", "c2")
    with open(os.path.join(path, "data")) as data:
        assert data.read() == fs
    harness.unmount("v", "c2")
    harness.remove("v")
    assert os.listdir(os.path.join(root, "images")) == []
    assert leftovers(root) == {"mounts": [], "loop_devices": []}


def test_existing_filesystem_is_mounted_never_formatted(
    harness: Harness, root: str, tmp_path: Path
) -> None:
    harness.create("v", size="320M", fs="ext4")
    image = os.path.join(root, "images", "v.img")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with attached(image) as device:  # someone put an xfs filesystem with data there
        run(["mkfs.xfs", "-q", device])
        run(["mount", device, str(scratch)])
        (scratch / "precious").write_text("keep me")
        run(["umount", str(scratch)])
    path = harness.mount("v", "c1")
    entry = mount_at(path)
    assert entry is not None and entry.fstype == "xfs"
    with open(os.path.join(path, "precious")) as precious:
        assert precious.read() == "keep me"
    harness.unmount("v", "c1")


def test_device_holding_something_else_is_refused(harness: Harness, root: str) -> None:
    harness.create("v", size="64M")
    image = os.path.join(root, "images", "v.img")
    run(["mkswap", image])
    before = sha256(image)
    with pytest.raises(BackendError, match=r"holds swap.*never formats"):
        harness.mount("v", "c1")
    assert sha256(image) == before
    assert harness.get("v").state == State.READY and harness.get("v").mounts == 0
    assert leftovers(root) == {"mounts": [], "loop_devices": []}


def test_vanished_filesystem_is_not_formatted_again(harness: Harness, root: str) -> None:
    harness.create("v", size="64M")
    harness.mount("v", "c1")
    harness.unmount("v", "c1")
    image = os.path.join(root, "images", "v.img")
    run(["wipefs", "--all", image])
    with pytest.raises(BackendError, match="refusing to format it again"):
        harness.mount("v", "c2")
    assert filesystem.probe(image) == {}
    assert leftovers(root) == {"mounts": [], "loop_devices": []}


def test_interrupted_format_is_done_again(
    harness: Harness, backend: LoopFileBackend, root: str
) -> None:
    """A crash during mkfs leaves a device that may look formatted: it is never trusted."""
    harness.create("v", size="320M", fs="xfs")
    image = os.path.join(root, "images", "v.img")
    backend.journal.update("v", formatting=True)
    run(["mkfs.ext4", "-q", "-F", image])  # whatever the interrupted mkfs left
    path = harness.mount("v", "c1")
    entry = mount_at(path)
    assert entry is not None and entry.fstype == "xfs"
    assert backend.journal.get("v")["formatted"] is True
    assert "formatting" not in backend.journal.get("v")
    harness.unmount("v", "c1")


def _size_of(harness: Harness, name: str) -> int:
    volume = harness.run(harness.service.refresh_usage("blk", name))
    assert volume.usage is not None and volume.usage.size is not None
    return volume.usage.size


@pytest.mark.parametrize("fs", filesystem.FILESYSTEMS)
def test_grow_while_mounted(harness: Harness, root: str, fs: str) -> None:
    if fs == "ext4" and not has_cap_sys_resource():
        pytest.skip("ext4 online grow needs CAP_SYS_RESOURCE, which this test process lacks")
    harness.create("v", size=SIZES[fs], fs=fs)
    path = harness.mount("v", "c1")
    payload = os.urandom(4 * MiB)
    with open(os.path.join(path, "blob"), "wb") as blob:
        blob.write(payload)
    before = _size_of(harness, "v")
    volume = harness.run(harness.service.resize("blk", "v", 640 * MiB))
    assert volume.options["size"] == str(640 * MiB)
    assert volume.usage is not None and volume.usage.size is not None
    assert volume.usage.size > before + 200 * MiB
    assert os.path.getsize(os.path.join(root, "images", "v.img")) == 640 * MiB
    with open(os.path.join(path, "blob"), "rb") as blob:
        assert blob.read() == payload
    harness.unmount("v", "c1")


def test_ext4_grow_without_cap_sys_resource_finishes_at_next_mount(
    harness: Harness, root: str
) -> None:
    if has_cap_sys_resource():
        pytest.skip("this process may grow ext4 online: covered by test_grow_while_mounted")
    harness.create("v", size="64M", fs="ext4")
    harness.mount("v", "c1")
    before = _size_of(harness, "v")
    with pytest.raises(BackendError, match="CAP_SYS_RESOURCE"):
        harness.run(harness.service.resize("blk", "v", 256 * MiB))
    harness.unmount("v", "c1")
    harness.mount("v", "c2")
    assert _size_of(harness, "v") > before + 150 * MiB
    harness.unmount("v", "c2")


@pytest.mark.parametrize("fs", filesystem.FILESYSTEMS)
def test_grow_while_detached_happens_at_next_mount(harness: Harness, fs: str) -> None:
    harness.create("v", size=SIZES[fs], fs=fs)
    path = harness.mount("v", "c1")
    with open(os.path.join(path, "mark"), "w") as mark:
        mark.write("kept")
    before = _size_of(harness, "v")
    harness.unmount("v", "c1")
    harness.run(harness.service.resize("blk", "v", 640 * MiB))
    path = harness.mount("v", "c2")
    assert _size_of(harness, "v") > before + 200 * MiB
    with open(os.path.join(path, "mark")) as mark:
        assert mark.read() == "kept"
    harness.unmount("v", "c2")


def test_shrinking_is_refused(harness: Harness, root: str) -> None:
    harness.create("v", size="128M")
    harness.mount("v", "c1")
    with pytest.raises(InvalidOption, match=r"shrinking it to 64\.0M is not supported"):
        harness.run(harness.service.resize("blk", "v", 64 * MiB))
    assert os.path.getsize(os.path.join(root, "images", "v.img")) == 128 * MiB
    assert harness.get("v").options["size"] == str(128 * MiB)
    harness.unmount("v", "c1")
    harness.mount("v", "c2")  # still usable
    harness.unmount("v", "c2")


def test_sparse_by_default_preallocated_on_request(harness: Harness, root: str) -> None:
    harness.create("sparse", size="256M")
    harness.create("full", size="256M", preallocate="true")
    sparse = os.stat(os.path.join(root, "images", "sparse.img"))
    full = os.stat(os.path.join(root, "images", "full.img"))
    assert sparse.st_size == full.st_size == 256 * MiB
    assert sparse.st_blocks * 512 < MiB
    assert full.st_blocks * 512 >= 256 * MiB
    facts = harness.service.backend_facts(harness.get("full"))
    assert facts["preallocated"] is True and facts["size"] == 256 * MiB and facts["fs"] == "ext4"


def test_usage_while_detached_is_the_last_measured(harness: Harness) -> None:
    harness.create("v", size="64M")
    # Never formatted yet: its size is known and nothing is in it.
    fresh = harness.run(harness.service.refresh_usage("blk", "v")).usage
    assert fresh is not None and (fresh.used, fresh.size, fresh.free) == (0, 64 * MiB, None)
    path = harness.mount("v", "c1")
    with open(os.path.join(path, "blob"), "wb") as blob:
        blob.write(os.urandom(8 * MiB))
    harness.unmount("v", "c1")
    usage = harness.run(harness.service.refresh_usage("blk", "v")).usage
    assert usage is not None and usage.used >= 8 * MiB
    assert usage.size is not None and usage.size <= 64 * MiB
    assert usage.free is not None and usage.free < usage.size


def test_admin_may_allow_suid_and_dev_per_driver(tmp_path: Path, root: str) -> None:
    trusting = LoopFileBackend(BackendContext("blk", root, settings={"allow_suid_dev": True}))
    harness = Harness(trusting, "blk", store_path=str(tmp_path / "trusting.db"))
    try:
        harness.create("v", size="64M", mount_options="suid,dev,noatime")
        entry = mount_at(harness.mount("v", "c1"))
        assert entry is not None
        flags = set(entry.options.split(","))
        assert "noatime" in flags and not flags & {"nosuid", "nodev"}
        harness.create("safe", size="64M")  # not asked: still nodev,nosuid
        entry = mount_at(harness.mount("safe", "c1"))
        assert entry is not None and {"nosuid", "nodev"} <= set(entry.options.split(","))
        harness.unmount("v", "c1")
        harness.unmount("safe", "c1")
    finally:
        harness.close()


def test_size_not_a_multiple_of_the_sector_size(harness: Harness, root: str) -> None:
    harness.create("odd", size="20000001")
    for mount_id in ("c1", "c2"):
        path = harness.mount("odd", mount_id)
        with open(os.path.join(path, mount_id), "w") as mark:
            mark.write(mount_id)
        harness.unmount("odd", mount_id)
    assert leftovers(root) == {"mounts": [], "loop_devices": []}


def test_many_volumes_attach_at_once(harness: Harness, root: str) -> None:
    """Parallel Mounts race for free loop devices: each volume gets its own, none is lost."""
    import asyncio

    names = [f"p{i}" for i in range(8)]
    for name in names:
        harness.create(name, size="32M")

    async def mount_all() -> list[str]:
        return await asyncio.gather(*(harness.service.mount("blk", n, "c") for n in names))

    paths = harness.run(mount_all())
    for name, path in zip(names, paths, strict=True):
        with open(os.path.join(path, "who"), "w") as who:
            who.write(name)
    devices = {mount_at(path).source for path in paths}  # type: ignore[union-attr]
    assert len(devices) == len(names)
    assert len(leftovers(root)["loop_devices"]) == len(names)

    async def unmount_all() -> None:
        await asyncio.gather(*(harness.service.unmount("blk", n, "c") for n in names))

    harness.run(unmount_all())
    assert leftovers(root) == {"mounts": [], "loop_devices": []}
    for name in names:
        with open(os.path.join(harness.mount(name, "again"), "who")) as who:
            assert who.read() == name
        harness.unmount(name, "again")
