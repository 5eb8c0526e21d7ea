"""Per volume series on real mounts: a tmpfs directory volume's inodes equal os.statvfs of
its mount, and a killed sshfs client counts one FUSE client restart when the next Mount
repairs it (the session's sshd, shared with the FUSE tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.directory.backend import DirectoryBackend
from orlop.backends.fuse.sshfs import SshfsBackend
from orlop.host import fuse, mounts
from orlop.host.fuse import MountState
from orlop.ops.metrics import MetricsExporter
from tests.servers.sshd.server import Sshd
from tests.support import network_fixtures
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.scrape import samples, value

pytestmark = pytest.mark.integration

sshd = network_fixtures.sshd
running_sshd = network_fixtures.running_sshd


def test_tmpfs_volume_inodes_equal_statvfs(tmp_path: Path) -> None:
    driver = unique("tmpfs")
    backend = DirectoryBackend(BackendContext(driver, str(tmp_path / "driver")))
    harness = Harness(backend, driver, store_path=str(tmp_path / "orlop.db"))
    try:
        options = {"type": "tmpfs", "device": "tmpfs", "o": "size=8m,nr_inodes=500"}
        harness.create("small", **options)
        path = harness.mount("small")
        for index in range(40):
            Path(path, f"f{index}").write_text("x")
        harness.run(harness.service.refresh_usage(driver, "small"))
        fs = os.statvfs(path)
        page = samples(MetricsExporter(harness.service).render().decode())
        key = {"driver": driver, "volume": "small"}
        assert value(page, "orlop_volume_inodes", **key) == fs.f_files == 500
        assert value(page, "orlop_volume_inodes_used", **key) == fs.f_files - fs.f_ffree
        assert value(page, "orlop_volume_inodes_used", **key) >= 41  # the files and the root
        assert value(page, "orlop_volume_inodes_free", **key) == fs.f_favail
        assert value(page, "orlop_volume_size_bytes", **key) == 8 * 1024 * 1024
        harness.unmount("small")
    finally:
        harness.close()
        for left in reversed(mounts.mounts_under(str(tmp_path))):
            with contextlib.suppress(Exception):
                mounts.unmount(left, lazy_if_busy=True)


@pytest.fixture
def sshfs_harness(tmp_path: Path) -> Iterator[Harness]:
    driver = unique("ssh")
    backend = SshfsBackend(BackendContext(driver, str(tmp_path / "driver")))
    harness = Harness(backend, driver, store_path=str(tmp_path / "orlop.db"))
    try:
        yield harness
    finally:
        harness.close()
        network_fixtures.unmount_all(str(tmp_path))


def test_a_dead_fuse_client_repaired_at_mount_is_counted(
    sshfs_harness: Harness, running_sshd: Sshd
) -> None:
    harness, driver = sshfs_harness, sshfs_harness.driver
    base = running_sshd.data / unique("vols")
    base.mkdir()
    harness.create("dead", **running_sshd.options(path=str(base)))
    key = {"driver": driver, "volume": "dead"}

    def restarts() -> float:
        page = samples(MetricsExporter(harness.service).render().decode())
        return value(page, "orlop_fuse_client_restarts_total", **key)

    path = harness.mount("dead", "c1")
    assert restarts() == 0  # a first mount is no restart
    os.kill(network_fixtures.client_pid(path), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while fuse.state(path) is not MountState.DEAD and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fuse.state(path) is MountState.DEAD
    harness.mount("dead", "c2")  # repairs: a new client
    assert fuse.state(path) is MountState.ALIVE
    assert restarts() == 1
    [repaired] = [e for e in harness.service.events.list() if e.kind == "repaired"]
    assert (repaired.driver, repaired.volume) == (driver, "dead")
    mounted = [e for e in harness.service.events.list() if e.kind == "mounted"]
    assert repaired.op == mounted[-1].op  # the repair belongs to the second Mount
    harness.unmount("dead", "c1")
    harness.unmount("dead", "c2")
