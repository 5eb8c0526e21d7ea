"""`orlop trash ls [--json] | restore NAME | purge [NAME]` on a real daemon whose driver has
`trash: 24h`: docker volume rm keeps the data, restore brings it back, purge frees it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon() -> Iterator[OrlopDaemon]:
    daemon = OrlopDaemon({unique("orlop-t"): {"backend": "directory", "trash": "24h"}})
    try:
        yield daemon.start()
    finally:
        daemon.destroy()


def test_rm_restore_and_purge_through_the_cli(daemon: OrlopDaemon) -> None:
    client = daemon.client()
    client.ok("Create", Name="kept", Opts={"mode": "0750"})
    mountpoint = client.ok("Mount", Name="kept", ID="c1")["Mountpoint"]
    with open(os.path.join(mountpoint, "record"), "w") as file:
        file.write("acknowledged")
    client.ok("Unmount", Name="kept", ID="c1")
    client.ok("Remove", Name="kept")
    assert client.ok("List")["Volumes"] == []
    [entry] = json.loads(daemon.cli("trash", "ls", "--json").stdout)
    assert entry["name"] == "kept" and entry["expires_at"] > entry["removed_at"]
    assert "kept" in daemon.cli("trash", "ls").stdout
    refused = client.call("Create", Name="kept", Opts={})
    assert "in the trash until" in refused["Err"]

    daemon.cli("trash", "restore", "kept")
    volume = client.ok("Get", Name="kept")["Volume"]
    assert volume["Status"]["options"]["mode"] == "0750"
    mountpoint = client.ok("Mount", Name="kept", ID="c2")["Mountpoint"]
    with open(os.path.join(mountpoint, "record")) as file:
        assert file.read() == "acknowledged"
    client.ok("Unmount", Name="kept", ID="c2")

    client.ok("Remove", Name="kept")
    assert daemon.cli("trash", "purge", "kept").stdout.split() == ["kept"]
    assert json.loads(daemon.cli("trash", "ls", "--json").stdout) == []
    missing = daemon.cli("trash", "restore", "kept", check=False)
    assert missing.returncode != 0 and "not in the trash" in missing.stderr + missing.stdout
    client.ok("Create", Name="kept", Opts={})  # the name is free again
