"""Data-path faults of a chaos run: the run's volume's disk is a `FaultyDisk` (nbdkit with its
error and pause filters, behind nbdfuse, under the presenter's loop device), so a step can
make it return I/O errors on reads or stall every request for a few seconds.

`install` hooks the world's presenter after the bare move: the first disk it is asked for
from then on but those in `exclude` (the run's volume, created at the first start) gets the
faulty backing. The
disk's processes live outside the run's root (its leak check looks for the run's own).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.support.cloud.presenter import DevicePresenter
from tests.support.faultydisk import FaultyDisk


class DataPath:
    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="orlop-chaos-disk-"))
        self.disk: FaultyDisk | None = None
        self.key: str | None = None

    def install(self, presenter: DevicePresenter, exclude: set[str], size: int) -> None:
        """Start the faulty disk now, in this (the run's main) thread: nbdkit exits with the
        thread that started it, and the presenter is called from the server's request
        threads, which end."""
        disk = FaultyDisk(str(self.workdir), size)
        try:
            disk.start()
        except BaseException:
            disk.close()
            raise
        self.disk = disk

        def backing(key: str, wanted: int) -> Path | None:
            if self.key is not None or key in exclude or wanted != size:
                return None
            self.key = key
            return Path(disk.file)

        presenter.backing = backing

    def set(self, fault: str, on: bool) -> None:
        """`fault` is "stall" (every request held) or "errors" (reads fail with EIO)."""
        assert self.disk is not None
        if fault == "stall":
            self.disk.stall(on)
        else:
            self.disk.fail_reads(on)

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
