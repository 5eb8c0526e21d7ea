"""A database writes while Orlop snapshots its volume; a clone started from a snapshot reads a
consistent table (InnoDB crash recovery, no gap, every checksum right).

loopfile volumes on an xfs state directory (reflinked image, fsfreeze around the copy) and
directory volumes on a btrfs one (atomic subvolume snapshots). The MariaDB image is built
from Debian's packages by tests/support/mariadb.py."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.hostfs import HostFilesystem
from tests.support.mariadb import ensure_mariadb_image, parse_check
from tests.support.names import unique

PLUGIN_DIR = "/run/docker/plugins"
CASES = {"loopfile": "xfs", "directory": "btrfs"}


@pytest.fixture(params=sorted(CASES))
def orlop_on_fs(request: pytest.FixtureRequest) -> Iterator[tuple[OrlopDaemon, str]]:
    kind = request.param
    fs = HostFilesystem(CASES[kind], size=2 * 1024**3)
    try:
        driver = unique(f"db-{kind}")
        options = {"size": "256M", "fs": "ext4"} if kind == "loopfile" else {}
        os.makedirs(f"{fs.path}/orlop")
        daemon = OrlopDaemon(
            {driver: {"backend": kind, "options": options}},
            plugin_dir=PLUGIN_DIR,
            root=f"{fs.path}/orlop",
        )
        try:
            yield daemon.start(), driver
        finally:
            daemon.destroy()
    finally:
        fs.destroy()


def _rows(dockerd: Dockerd, container: str) -> int:
    result = dockerd.run(
        "exec",
        container,
        "mariadb",
        "--socket=/run/mysqld/mysqld.sock",
        "--batch",
        "--skip-column-names",
        "-e",
        "SELECT COUNT(*) FROM t.rows",
        check=False,
    )
    return int(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else 0


def test_clone_of_a_snapshot_taken_while_writing_is_consistent(
    dockerd: Dockerd, orlop_on_fs: tuple[OrlopDaemon, str]
) -> None:
    daemon, driver = orlop_on_fs
    image = ensure_mariadb_image(dockerd)
    volume, clone, writer = unique("db"), unique("clone"), unique("writer")
    dockerd.run("volume", "create", "-d", driver, volume)
    try:
        dockerd.run(
            "run", "-d", "--name", writer, "--network", "none",
            "-v", f"{volume}:/var/lib/mysql", image, "orlop-mariadb", "write",
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while _rows(dockerd, writer) < 200:
            assert time.monotonic() < deadline, dockerd.run("logs", writer, check=False).stderr
            time.sleep(0.2)
        for number in range(3):  # while the writer commits row after row
            daemon.cli("snapshot", "create", volume, f"{volume}-s{number}")
            time.sleep(0.3)
        written = _rows(dockerd, writer)

        dockerd.run("volume", "create", "-d", driver, "--opt", f"from_snapshot={volume}-s2", clone)
        output = dockerd.run(
            "run", "--rm", "--network", "none", "-v", f"{clone}:/var/lib/mysql",
            image, "orlop-mariadb", "check",
        ).stdout  # fmt: skip
        table = parse_check(output)
        assert table["bad"] == 0, output
        assert table["rows"] == table["max"] + 1, output  # no row lost in the middle
        assert 200 <= table["rows"] <= written, output
        assert _rows(dockerd, writer) > written  # the original kept writing all along
    finally:
        dockerd.run("rm", "-f", writer, check=False)
        for name in (clone, volume):
            dockerd.run("volume", "rm", name, check=False)
