"""Share volumes through a real dockerd: one container writes, another reads, and a second
Orlop "host" reads it all the moment the writer's Unmount has answered."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support import share_fixtures
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique
from tests.support.share_fixtures import AzureAccount, PowerScaleCluster

PLUGIN_DIR = "/run/docker/plugins"

samba = share_fixtures.samba
azure = share_fixtures.azure
powerscale = share_fixtures.powerscale

# Written with `>`, never `>>`: smbnetfs fails write-only appends (README, known limits).
WRITE = (
    "set -e; for i in 1 2 3; do dd if=/dev/urandom of=/data/part-$i bs=1M count=4 "
    "2>/dev/null; done; cd /data && sha256sum part-* > SHA256SUMS"
)


@pytest.fixture(scope="session")
def share_daemon(
    azure: AzureAccount, powerscale: PowerScaleCluster
) -> Iterator[tuple[dict[str, str], OrlopDaemon]]:
    """One daemon dockerd talks to, with an azurefile and a powerscale driver."""
    drivers = {"azurefile": unique("orlop-az"), "powerscale": unique("orlop-isi")}
    config = {
        drivers["azurefile"]: {
            "backend": "azurefile",
            "options": {"size": "1G", "delete_on_remove": "true", "timeout": "60"},
            "settings": azure.settings(),
        },
        drivers["powerscale"]: {
            "backend": "powerscale",
            "options": {"size": "64M", "protocol": "smb", "timeout": "60"},
            "settings": powerscale.settings(base_path=f"/ifs/{unique('e2e')}"),
        },
    }
    daemon = OrlopDaemon(config, plugin_dir=PLUGIN_DIR)
    try:
        yield drivers, daemon.start()
    finally:
        daemon.destroy()


@pytest.mark.parametrize("kind", ["azurefile", "powerscale"])
def test_one_container_writes_another_reads(
    dockerd: Dockerd, share_daemon: tuple[dict[str, str], OrlopDaemon], kind: str
) -> None:
    drivers, _daemon = share_daemon
    volume = unique("share")
    dockerd.run("volume", "create", "-d", drivers[kind], volume)
    try:
        dockerd.sh(volume, WRITE)
        check = dockerd.sh(volume, "cd /data && sha256sum -c SHA256SUMS && ls /data | wc -l")
        assert check.count(": OK") == 3
        assert check.split()[-1] == "4"
        status = json.loads(dockerd.run("volume", "inspect", volume).stdout)[0]["Status"]
        assert status["backend"] == kind
    finally:
        dockerd.run("volume", "rm", "-f", volume, check=False)
