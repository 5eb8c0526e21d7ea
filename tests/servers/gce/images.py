"""Snapshot data for the GCE test server: a snapshot keeps a sparse copy of its disk's image
taken when it was requested (Compute Engine's snapshots are point in time), and a disk made
from it starts with those bytes, so a restored volume has its files, as on Compute Engine."""

from __future__ import annotations

import os
from pathlib import Path

from orlop.host.run import run
from tests.support.cloud.presenter import DevicePresenter


def _image(presenter: DevicePresenter, disk_id: str) -> Path:
    return presenter.root / f"{disk_id}.img"  # disk IDs are digits: the presenter's file name


def _kept(presenter: DevicePresenter, snapshot_id: str) -> Path:
    return presenter.root / "snapshots" / f"{snapshot_id}.img"


def keep(presenter: DevicePresenter | None, disk_id: str, snapshot_id: str) -> None:
    """Copy the disk's bytes now, if it ever had a device (else it is blank)."""
    if presenter is None or not _image(presenter, disk_id).exists():
        return
    _kept(presenter, snapshot_id).parent.mkdir(exist_ok=True)
    run(
        [
            "cp",
            "--sparse=always",
            str(_image(presenter, disk_id)),
            str(_kept(presenter, snapshot_id)),
        ]
    )


def restore(presenter: DevicePresenter | None, snapshot_id: str, disk_id: str, size: int) -> None:
    """Give a new disk the snapshot's bytes (its loop device is made here, still unread)."""
    if presenter is None or not _kept(presenter, snapshot_id).exists():
        return
    device = presenter.device_for(disk_id, size)
    image = _image(presenter, disk_id)
    run(["cp", "--sparse=always", str(_kept(presenter, snapshot_id)), str(image)])
    os.truncate(image, size)
    run(["losetup", "--set-capacity", device])
    run(["blockdev", "--flushbufs", device])


def drop(presenter: DevicePresenter | None, snapshot_id: str) -> None:
    if presenter is not None:
        _kept(presenter, snapshot_id).unlink(missing_ok=True)
