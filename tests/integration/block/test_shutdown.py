"""HostMounter.shut_down on a real ext4 / xfs loop mount: what fencing does to a stale mount
where a second attach goes through (docs/fencing.md). After the shutdown nothing more reaches
the device: a write fails, what was fsynced before survives (the journal replays at the next
mount), what was not is gone. A device mounted at two places is left alone."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.host import loop, mounts
from orlop.host.mounter import HostMounter
from orlop.host.run import run

SIZES = {"ext4": 64, "xfs": 320}  # MiB: xfs's smallest


@pytest.fixture(params=sorted(SIZES))
def formatted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    fstype = request.param
    image = tmp_path / f"disk-{fstype}.img"
    with open(image, "wb") as file:
        file.truncate(SIZES[fstype] * 1024 * 1024)
    device = loop.attach(str(image))
    try:
        run([f"mkfs.{fstype}", "-q", device], timeout=60)
        yield device, fstype
    finally:
        for target in mounts.mounts_under(str(tmp_path)):
            with contextlib.suppress(Exception):
                mounts.unmount(target, lazy_if_busy=True)
        loop.detach(device)


def write(path: Path, text: str, durable: bool) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
        if durable:
            file.flush()
            os.fsync(file.fileno())


def test_a_shut_down_mount_writes_nothing_more(formatted: tuple[str, str], tmp_path: Path) -> None:
    device, fstype = formatted
    target = tmp_path / "mnt"
    target.mkdir()
    mounts.mount(device, str(target), fstype)
    write(target / "kept", "fsynced before the take-over", durable=True)
    write(target / "dropped", "only in the page cache", durable=False)

    assert HostMounter().shut_down(str(target)) is True
    with pytest.raises(OSError):
        write(target / "after", "written after the shutdown", durable=True)
    mounts.unmount(str(target), lazy_if_busy=True)

    mounts.mount(device, str(target), fstype)  # the next holder's mount: the journal replays
    try:
        assert (target / "kept").read_text() == "fsynced before the take-over"
        assert not (target / "after").exists()
        dropped = target / "dropped"
        assert not dropped.exists() or dropped.read_text() == ""
    finally:
        mounts.unmount(str(target))


def test_a_device_mounted_at_two_places_is_not_shut_down(
    formatted: tuple[str, str], tmp_path: Path
) -> None:
    device, fstype = formatted
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    mounts.mount(device, str(first), fstype)
    mounts.mount(device, str(second), fstype)  # one kernel: the same filesystem twice
    assert HostMounter().shut_down(str(first)) is False
    write(second / "still", "writable", durable=True)
    assert (first / "still").read_text() == "writable"
    assert HostMounter().shut_down(str(tmp_path / "nothing-mounted")) is False
