"""Never format over data: a device is formatted only when Orlop's record says it never was
*and* it reads back blank. A disk whose reads fail (nbdkit error filter behind nbdfuse and a
loop device) looks blank to blkid; it must meet a clear error, keep every byte, and mount
with its data once it reads again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from orlop.backends.block import filesystem
from orlop.backends.loopfile.provider import LoopFileBackend
from orlop.core.model import BackendError, State
from orlop.host import loop
from orlop.host.run import run
from tests.support.block import leftovers
from tests.support.faultydisk import FaultyDisk
from tests.support.harness import Harness

MiB = 1024 * 1024
SIZES = {"ext4": 64 * MiB, "xfs": 320 * MiB, "btrfs": 160 * MiB}


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def put_filesystem(image: str, fs: str, scratch: Path) -> None:
    """Format `image` as `fs` with one file in it, as another host would have."""
    run([f"mkfs.{fs}", "-q", image] if fs == "ext4" else [f"mkfs.{fs}", "-q", "-f", image])
    device = loop.attach(image)
    scratch.mkdir(exist_ok=True)
    try:
        run(["mount", device, str(scratch)])
        (scratch / "precious").write_text("keep me")
        run(["umount", str(scratch)])
    finally:
        loop.detach(device)


@pytest.mark.parametrize("fs", filesystem.FILESYSTEMS)
def test_disk_whose_reads_fail_is_not_formatted_and_mounts_once_it_reads(
    harness: Harness, backend: LoopFileBackend, root: str, tmp_path: Path, fs: str
) -> None:
    with FaultyDisk(str(tmp_path / "faulty"), SIZES[fs]) as disk:
        put_filesystem(disk.image, fs, tmp_path / "scratch")
        # A volume whose record says "never formatted" (new here; formatted on another
        # host, as a cloud disk is), whose device is the failing disk.
        harness.create("v", size=str(SIZES[fs]), fs="ext4")
        image = os.path.join(root, "images", "v.img")
        os.unlink(image)
        os.symlink(disk.file, image)
        before = sha256(disk.image)

        disk.fail_reads(True)
        with pytest.raises(BackendError, match=r"cannot read /dev/loop\d+ .*refusing to"):
            harness.mount("v", "c1")
        assert sha256(disk.image) == before, "the failing disk was written to"
        assert backend.journal.get("v") == {}, "a failed read is journaled as nothing"
        assert harness.get("v").state == State.READY and harness.get("v").mounts == 0
        assert disk.loop_devices() == []

        disk.fail_reads(False)
        path = harness.mount("v", "c1")
        with open(os.path.join(path, "precious")) as precious:
            assert precious.read() == "keep me"
        assert backend.journal.get("v")["fs"] == fs
        harness.unmount("v", "c1")
        assert disk.loop_devices() == []
    assert leftovers(root) == {"mounts": [], "loop_devices": []}


def test_data_without_a_signature_is_not_formatted(
    harness: Harness, backend: LoopFileBackend, root: str
) -> None:
    harness.create("v", size="64M")
    image = os.path.join(root, "images", "v.img")
    with open(image, "r+b") as file:  # bytes nothing recognises, where a superblock would be
        file.seek(3 * 4096)
        file.write(b"application data, no filesystem signature" * 10)
    before = sha256(image)
    for attempt in ("c1", "c2"):  # and a retry is no reason to format either
        with pytest.raises(BackendError, match=r"first MiB .* never over data.*blkdiscard -z"):
            harness.mount("v", attempt)
    assert sha256(image) == before
    assert backend.journal.get("v") == {}
    assert harness.get("v").state == State.READY
    assert leftovers(root) == {"mounts": [], "loop_devices": []}


def test_blank_device_reads_back_blank(tmp_path: Path) -> None:
    image = tmp_path / "blank.img"
    image.write_bytes(b"")
    os.truncate(image, 64 * MiB + 512)  # a size that is no multiple of the page size
    device = loop.attach(str(image))
    try:
        assert filesystem.detect(device) is None
        head, tail = filesystem.read_ends(device)
        assert len(head) == MiB and head.count(0) == MiB
        assert len(tail) >= MiB and tail.count(0) == len(tail)
    finally:
        loop.detach(device)


def test_a_stalled_read_is_an_error_never_blank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filesystem, "READ_TIMEOUT", 0.5)
    with FaultyDisk(str(tmp_path / "faulty"), 64 * MiB) as disk:
        device = disk.attach()
        disk.stall(True)
        try:
            with pytest.raises(BackendError, match=r"did not answer a read within 0\.5s.*refusing"):
                filesystem.read_ends(device)
        finally:
            disk.stall(False)
        assert filesystem.detect(device) is None  # it answers again: blank, as it is
        loop.detach(device)
