"""pytest fixtures for network volumes: a session sshd and S3 server, and mount cleanup.

Import the fixtures you need into a test module (`from tests.support.network_fixtures
import sshd, s3  # noqa: F401`); each server is started once per session and stopped at the
end, even after failures.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from orlop.host import fuse
from orlop.host.mounts import mounts_under
from tests.servers.s3.server import S3Server
from tests.servers.sshd.server import Sshd


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    server = Sshd()
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture
def running_sshd(sshd: Sshd) -> Sshd:
    """The session sshd, started again if an earlier test stopped it."""
    if sshd.process is None or sshd.process.poll() is not None:
        sshd.start()
    return sshd


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    try:
        yield server.start()
    finally:
        server.destroy()


def unmount_all(root: str) -> None:
    """Unmount every mount left below `root` (a failed test's FUSE mounts)."""
    if not os.path.exists(root):
        return
    for mounted in mounts_under(root):
        with contextlib.suppress(Exception):
            fuse.unmount(mounted, pid=None)


def fuse_client_args(mountpoint: str) -> list[list[str]]:
    """The argv of every process whose command line names `mountpoint`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = [a.decode(errors="replace") for a in cmdline.read().split(b"\0") if a]
        except OSError:
            continue
        if mountpoint in args:
            found.append(args)
    return found


def client_pid(mountpoint: str) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if os.fsencode(mountpoint) in args:
            return int(entry)
    raise AssertionError(f"no FUSE client serves {mountpoint}")
