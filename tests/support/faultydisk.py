"""A disk that fails on demand: nbdkit (error filter) behind nbdfuse, shown as a loop device.

    with FaultyDisk(workdir, size=64 * MiB) as disk:
        disk.image                # the backing file: write a filesystem into it beforehand
        disk.file                 # the NBD export as a plain file (nbdfuse): losetup it
        disk.attach()             # ... or let the disk make the loop device
        disk.fail_reads(True)     # every read now returns EIO (writes still succeed)
        disk.fail_reads(False)    # the disk reads again
        disk.stall(True)          # every request now hangs (pause filter) ...
        disk.stall(False)         # ... until this

The failures are switched by a trigger file (`error-pread-file`), so they start and stop
at once without restarting anything. Writes always succeed: the dangerous disk is the one
that hides its data from a reader but still takes a format. On exit every loop device of the
file is detached, the FUSE mount is undone and both processes are stopped, even on failure.
Needs nbdkit and nbdfuse (Debian: nbdkit, libnbd-bin; `scripts/setup --test` installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from types import TracebackType

from orlop.host import loop
from orlop.host.mounts import mount_at, unmount
from tests.support.processes import stop_process

START_TIMEOUT = 10.0


class FaultyDisk:
    def __init__(self, workdir: str, size: int) -> None:
        for tool in ("nbdkit", "nbdfuse"):
            if shutil.which(tool) is None:
                raise RuntimeError(
                    f"{tool} is not installed: the failing-disk tests need nbdkit and nbdfuse "
                    "(Debian packages nbdkit, libnbd-bin; scripts/setup --test installs them)"
                )
        self.workdir = workdir
        self.size = size
        self.image = os.path.join(workdir, "backing.img")
        self.socket = os.path.join(workdir, "nbd.sock")
        self.trigger = os.path.join(workdir, "fail-reads")
        self.control = os.path.join(workdir, "pause.sock")
        self.mountpoint = os.path.join(workdir, "fuse")
        self.file = os.path.join(self.mountpoint, "disk")
        self._nbdkit: subprocess.Popen[bytes] | None = None
        self._nbdfuse: subprocess.Popen[bytes] | None = None
        os.makedirs(self.mountpoint, exist_ok=True)
        with open(self.image, "wb") as image:
            image.truncate(size)

    def __enter__(self) -> FaultyDisk:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        self._nbdkit = subprocess.Popen(
            [
                "nbdkit",
                "--foreground",
                "--exit-with-parent",
                "--unix",
                self.socket,
                "--filter=error",
                "--filter=pause",
                "file",
                self.image,
                f"pause-control={self.control}",
                "error-pread=EIO",
                "error-pread-rate=100%",
                f"error-pread-file={self.trigger}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: os.path.exists(self.socket), "nbdkit's socket", self._nbdkit)
        self._nbdfuse = subprocess.Popen(
            ["nbdfuse", self.file, "--unix", self.socket],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: mount_at(self.mountpoint) is not None, "the nbdfuse mount", self._nbdfuse)
        _wait_for(lambda: os.path.exists(self.file), "the nbdfuse file", self._nbdfuse)

    def attach(self) -> str:
        """A loop device over the NBD export (the same one each time)."""
        return loop.attach(self.file)

    def fail_reads(self, failing: bool) -> None:
        if failing:
            with open(self.trigger, "w"):
                pass
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.trigger)

    def stall(self, stalled: bool) -> None:
        """Hold every request from now on (True) or let them through again (False)."""
        command = b"p" if stalled else b"r"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
            control.settimeout(START_TIMEOUT)
            control.connect(self.control)
            control.sendall(command)
            if control.recv(1) != command.upper():
                raise RuntimeError(f"nbdkit's pause filter did not confirm {command!r}")

    def loop_devices(self) -> list[str]:
        """Loop devices over the export now (a test checks none is left)."""
        return loop.devices_for(self.file) if mount_at(self.mountpoint) is not None else []

    def close(self) -> None:
        self.fail_reads(False)
        with contextlib.suppress(OSError, RuntimeError):
            self.stall(False)
        with contextlib.suppress(Exception):
            for device in self.loop_devices():
                loop.detach(device)
        if mount_at(self.mountpoint) is not None:
            with contextlib.suppress(Exception):
                unmount(self.mountpoint, lazy_if_busy=True)
        stop_process(self._nbdfuse)
        stop_process(self._nbdkit)
        self._nbdfuse = self._nbdkit = None


def _wait_for(
    ready: Callable[[], bool],
    what: str,
    process: subprocess.Popen[bytes],
    timeout: float = START_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} never appeared: the process exited {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not appear within {timeout:g}s")
        time.sleep(0.02)
