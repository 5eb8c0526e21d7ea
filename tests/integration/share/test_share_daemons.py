"""Two `orlop serve` daemons ("two hosts"): one finds the volume the other made, both mount it
at once and see each other's writes; the daemons' logs never hold the key or password."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import share_fixtures
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique
from tests.support.share_fixtures import AzureAccount, PowerScaleCluster

samba = share_fixtures.samba
azure = share_fixtures.azure
powerscale = share_fixtures.powerscale


@contextlib.contextmanager
def two_hosts(config: dict[str, Any]) -> Iterator[tuple[str, OrlopDaemon, OrlopDaemon]]:
    driver = unique("share")
    first, second = OrlopDaemon({driver: config}), OrlopDaemon({driver: config})
    try:
        first.start()
        second.start()
        yield driver, first, second
    finally:
        second.destroy()
        first.destroy()


def driver_config(kind: str, request: pytest.FixtureRequest) -> tuple[dict[str, Any], str]:
    if kind == "azurefile":
        account: AzureAccount = request.getfixturevalue("azure")
        options = {"size": "1G", "delete_on_remove": "true", "timeout": "60"}
        return {"backend": kind, "options": options, "settings": account.settings()}, account.key
    cluster: PowerScaleCluster = request.getfixturevalue("powerscale")
    settings = cluster.settings(base_path=f"/ifs/{unique('two')}")
    options = {"size": "64M", "protocol": "smb", "timeout": "60"}
    return {"backend": kind, "options": options, "settings": settings}, cluster.password


@pytest.mark.parametrize("kind", ["azurefile", "powerscale"])
def test_two_hosts_discover_mount_at_once_and_see_each_others_writes(
    kind: str, request: pytest.FixtureRequest
) -> None:
    config, secret = driver_config(kind, request)
    config["settings"]["discover_interval"] = 0.5
    with two_hosts(config) as (driver, first, second):
        a, b = first.client(driver), second.client(driver)
        volume = unique("both")
        try:
            a.ok("Create", Name=volume, Opts={})
            # The other host lists it without being told (discovery from the storage API).
            deadline = time.monotonic() + 30
            while volume not in {v["Name"] for v in b.ok("List")["Volumes"]}:
                assert time.monotonic() < deadline, "the other host never listed the volume"
                time.sleep(0.2)
            path_a = Path(a.ok("Mount", Name=volume, ID="ca")["Mountpoint"])
            path_b = Path(b.ok("Mount", Name=volume, ID="cb")["Mountpoint"])
            assert path_a != path_b  # two hosts, two mounts, one share
            (path_a / "from-a").write_bytes(b"a" * 100_000)
            assert (path_b / "from-a").read_bytes() == b"a" * 100_000
            (path_b / "from-b").write_text("written on b")
            assert (path_a / "from-b").read_text() == "written on b"
            status = a.ok("Get", Name=volume)["Volume"]["Status"]
            assert secret not in repr(status)
            a.ok("Unmount", Name=volume, ID="ca")
            assert (path_b / "from-b").read_text() == "written on b"  # b is untouched
            b.ok("Unmount", Name=volume, ID="cb")
            b.ok("Remove", Name=volume)  # deletes the share for every host
            a.ok("Remove", Name=volume)
        finally:
            a.close()
            b.close()
        for daemon in (first, second):
            assert secret not in daemon.log()
            assert secret not in daemon.config_path.read_text()  # only file names
