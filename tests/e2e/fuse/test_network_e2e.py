"""Network volumes through a real dockerd: containers and a second Orlop "host" share data.

The second host is a second `orlop serve` with its own state directory and sockets, driven
over its plugin socket exactly as its dockerd would (Create, Mount, read, Unmount).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.s3.server import S3Server
from tests.servers.sshd.server import Sshd
from tests.support import network_fixtures
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import IMAGE, Dockerd
from tests.support.names import unique

PLUGIN_DIR = "/run/docker/plugins"

sshd = network_fixtures.sshd
running_sshd = network_fixtures.running_sshd
s3 = network_fixtures.s3

# A container writes files of random data and records their digests next to them.
WRITE = (
    "set -e; for i in 1 2 3 4; do "
    "dd if=/dev/urandom of=/data/part-$i bs=1M count=6 2>/dev/null; done; "
    "cd /data && sha256sum part-* > SHA256SUMS"
)


@contextlib.contextmanager
def two_hosts(config: dict[str, Any]) -> Iterator[tuple[str, OrlopDaemon, OrlopDaemon]]:
    """(driver name, the daemon dockerd talks to, a second daemon on "another host").

    One driver name per session and kind: dockerd remembers every driver it has used and
    retries dead ones when it looks up an unknown volume name.
    """
    driver = unique("orlop-net")
    first = OrlopDaemon({driver: config}, plugin_dir=PLUGIN_DIR)
    second = OrlopDaemon({driver: config})
    try:
        first.start()
        second.start()
        yield driver, first, second
    finally:
        second.destroy()
        first.destroy()


@pytest.fixture(scope="session")
def ssh_hosts(sshd: Sshd) -> Iterator[tuple[str, OrlopDaemon, OrlopDaemon]]:
    base = sshd.data / unique("e2e")
    base.mkdir()
    with two_hosts({"backend": "sshfs", "options": sshd.options(path=str(base))}) as hosts:
        yield hosts


@pytest.fixture(scope="session")
def s3_hosts(s3: S3Server) -> Iterator[tuple[str, OrlopDaemon, OrlopDaemon]]:
    options = s3.options("e2e", prefix=unique("e2e"), delete_on_remove="true")
    with two_hosts({"backend": "s3", "options": options}) as hosts:
        yield hosts


def read_on_other_host(daemon: OrlopDaemon, driver: str, volume: str) -> dict[str, str]:
    """Mount `volume` on the second daemon; return file → sha256 of what it holds."""
    client = daemon.client(driver)
    try:
        client.ok("Create", Name=volume, Opts={})
        mountpoint = client.ok("Mount", Name=volume, ID="other-host")["Mountpoint"]
        digests = {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in Path(mountpoint).iterdir()
            if path.name.startswith("part-")
        }
        recorded = Path(mountpoint, "SHA256SUMS").read_text()
        client.ok("Unmount", Name=volume, ID="other-host")
    finally:
        client.close()
    expected = dict(reversed(line.split()) for line in recorded.splitlines())
    assert digests == expected
    return digests


@pytest.mark.parametrize("kind", ["ssh", "s3"])
def test_containers_and_another_host_share_a_volume(
    dockerd: Dockerd, kind: str, request: pytest.FixtureRequest
) -> None:
    driver, _first, second = request.getfixturevalue(f"{kind}_hosts")
    volume = unique("vol")
    dockerd.run("volume", "create", "-d", driver, volume)
    try:
        dockerd.sh(volume, WRITE)
        # The moment the writer is gone (its Unmount answered), another host reads it all.
        digests = read_on_other_host(second, driver, volume)
        assert len(digests) == 4
        check = dockerd.run(
            "run", "--rm", "-v", f"{volume}:/data", IMAGE, "sh", "-c",
            "cd /data && sha256sum -c SHA256SUMS",
        )  # fmt: skip
        assert check.stdout.count(": OK") == 4
    finally:
        dockerd.run("volume", "rm", "-f", volume, check=False)


def test_sshd_restart_while_a_container_holds_the_volume(
    dockerd: Dockerd, ssh_hosts: tuple[str, OrlopDaemon, OrlopDaemon], running_sshd: Sshd
) -> None:
    driver, _first, _second = ssh_hosts
    volume = unique("vol")
    holder = unique("holder")
    dockerd.run("volume", "create", "-d", driver, volume)
    try:
        dockerd.run(
            "run",
            "-d",
            "--name",
            holder,
            "-v",
            f"{volume}:/data",
            IMAGE,
            "sh",
            "-c",
            "echo before > /data/before; sleep 300",
        )
        dockerd.run("exec", holder, "cat", "/data/before")
        running_sshd.stop()
        running_sshd.start()
        result = dockerd.run(
            "run", "--rm", "-v", f"{volume}:/data", IMAGE, "sh", "-c",
            "cat /data/before && echo after > /data/after && cat /data/after",
        )  # fmt: skip
        assert result.stdout.split() == ["before", "after"]
    finally:
        with contextlib.suppress(Exception):
            dockerd.run("rm", "-f", holder, check=False)
        dockerd.run("volume", "rm", "-f", volume, check=False)
