"""PowerScale across hosts: two hosts creating one volume at once, a create still under way
elsewhere, a kept volume that stays kept, a volume another host made adopted with its real
size and options (the shared-volume and keep_on_remove conformance suites)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import Backend, BackendContext
from orlop.backends.share.powerscale.backend import PowerScaleBackend
from orlop.core.failpoints import FAILPOINT_EXIT_STATUS
from orlop.core.model import BackendError, Conflict, Volume
from tests.contracts.hosts import SharedVolumeConformance
from tests.contracts.keep import KeepOnRemoveConformance
from tests.support import network_fixtures, share_fixtures
from tests.support.daemon import OrlopDaemon
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.share_fixtures import PowerScaleCluster

samba = share_fixtures.samba
powerscale = share_fixtures.powerscale
unmount_all = network_fixtures.unmount_all
MIB = 1024**2
OPTIONS = {"size": "32M", "protocol": "smb", "timeout": "60"}


class Hosts:
    """Harnesses over one cluster, each with its own state directory and store."""

    def __init__(self, tmp_path: Path, cluster: PowerScaleCluster) -> None:
        self.tmp_path, self.cluster = tmp_path, cluster
        self.base = f"/ifs/{unique('hosts')}"
        self.made: list[Harness] = []

    def host(self, name: str) -> Harness:
        settings = self.cluster.settings(base_path=self.base)
        context = BackendContext("isi", str(self.tmp_path / name / "driver"), settings=settings)
        harness = Harness(PowerScaleBackend(context), "isi", str(self.tmp_path / name / "db"))
        self.made.append(harness)
        return harness

    def close(self) -> None:
        for harness in self.made:
            for volume in harness.service.list("isi"):
                for mount_id in list(volume.mount_ids):
                    harness.unmount(volume.name, mount_id)
            harness.close()
        unmount_all(str(self.tmp_path))


@pytest.fixture
def hosts(tmp_path: Path, powerscale: PowerScaleCluster) -> Iterator[Hosts]:
    made = Hosts(tmp_path, powerscale)
    try:
        yield made
    finally:
        made.close()


def test_a_create_still_under_way_elsewhere_is_waited_for_then_refused_and_left_alone(
    hosts: Hosts, powerscale: PowerScaleCluster
) -> None:
    a, b = hosts.host("a"), hosts.host("b")
    made = a.create("slow", **OPTIONS)
    quota = powerscale.server.quotas[made.record["quota_id"]]
    ready = quota["description"]
    quota["description"] = "orlop volume=slow state=creating keep=false token=f00d"  # host c died
    with pytest.raises(BackendError, match=r"being created by another host.*after 2s"):
        b.create("slow", **{**OPTIONS, "timeout": "2"})
    assert b.names() == []
    assert made.record["quota_id"] in powerscale.server.quotas  # nothing of it undone
    assert Path(powerscale.server.local(f"{hosts.base}/slow")).is_dir()
    quota["description"] = ready
    assert b.create("slow", **OPTIONS).record["quota_id"] == made.record["quota_id"]


class TestPowerScaleHosts(KeepOnRemoveConformance, SharedVolumeConformance):
    keep_options = {**OPTIONS, "keep_on_remove": "true"}
    create_options = OPTIONS
    bigger = {**OPTIONS, "size": "48M"}
    driver_defaults = {"protocol": "smb"}

    @contextlib.contextmanager
    def slow_storage(self) -> Iterator[None]:
        # Both hosts look, then both make: the window a real cluster has.
        self.cluster.latency = 0.03
        try:
            yield
        finally:
            self.cluster.latency = 0.0

    @pytest.fixture
    def new_host(self, tmp_path: Path, powerscale: PowerScaleCluster) -> Iterator[Any]:
        base, count = f"/ifs/{unique('keep')}", iter(range(100))
        self.cluster = powerscale.server

        def host() -> PowerScaleBackend:
            state = tmp_path / f"host{next(count)}" / "driver"
            settings = powerscale.settings(base_path=base)
            context = BackendContext("isi", str(state), self.driver_defaults, settings)
            return PowerScaleBackend(context)

        try:
            yield host
        finally:
            unmount_all(str(tmp_path))

    def still_stored(self, backend: Backend, volume: Volume) -> bool:
        assert isinstance(backend, PowerScaleBackend)
        quota = backend.provider.api().find_quota(volume.record["path"])
        return quota is not None and quota["id"] == volume.record["quota_id"]

    def delete_kept(self, backend: Backend, volume: Volume) -> None:
        assert isinstance(backend, PowerScaleBackend)
        api, record = backend.provider.api(), volume.record
        api.delete_smb_share(record["smb_share"])
        api.delete_quota(record["quota_id"])
        api.delete_directory(record["path"])


def test_a_volume_another_host_made_is_adopted_with_its_real_size_and_protocol(
    hosts: Hosts,
) -> None:
    a, b = hosts.host("a"), hosts.host("b")  # b's driver default protocol is nfs
    a.create("sized", size="48M", protocol="smb", timeout="60")
    adopted = b.run(b.service.discover("isi"))
    assert [(v.name, v.options["size"], v.options["protocol"]) for v in adopted] == [
        ("sized", str(48 * MIB), "smb")
    ]
    assert b.create("sized", size="48M", protocol="smb").record == a.get("sized").record
    with pytest.raises(Conflict, match="different options"):
        b.create("sized", size="64M")
    a.remove("sized")


def test_a_kept_volume_created_again_by_name_keeps_its_keep_setting(
    hosts: Hosts, powerscale: PowerScaleCluster
) -> None:
    a, c = hosts.host("a"), hosts.host("c")
    made = a.create("precious", **OPTIONS, keep_on_remove="true")
    Path(a.mount("precious", "m1"), "data").write_text("keep me")
    a.unmount("precious", "m1")
    a.remove("precious")
    quota = powerscale.server.quotas[made.record["quota_id"]]
    assert "state=kept" in quota["description"]
    again = c.create("precious", **OPTIONS)  # on purpose, by name, without keep_on_remove
    assert "state=ready keep=true" in quota["description"]
    assert Path(c.mount("precious", "m1"), "data").read_text() == "keep me"
    c.unmount("precious", "m1")
    c.remove("precious")  # still kept: the keep setting came with it
    assert "state=kept" in quota["description"]
    assert again.record["quota_id"] in powerscale.server.quotas
    c.create("precious", **OPTIONS, keep_on_remove="false")  # deleting it takes asking
    c.remove("precious")
    assert again.record["quota_id"] not in powerscale.server.quotas


def test_a_create_the_daemon_died_in_is_undone_at_the_next_start(
    powerscale: PowerScaleCluster,
) -> None:
    driver, base = unique("isi"), f"/ifs/{unique('crash')}"
    settings = powerscale.settings(base_path=base, discover_interval=0.5)
    daemon = OrlopDaemon(
        {driver: {"backend": "powerscale", "options": OPTIONS, "settings": settings}}
    )
    cluster = powerscale.server
    try:
        daemon.start(extra_env={"ORLOP_FAILPOINTS": "powerscale.after_claim"})
        with contextlib.suppress(Exception):  # the daemon dies with the request open
            daemon.client(driver).call("Create", Name="torn", Opts={})
        assert daemon.wait() == FAILPOINT_EXIT_STATUS
        claimed = [q for q in cluster.quotas.values() if q["path"] == f"{base}/torn"]
        assert [("state=creating" in q["description"]) for q in claimed] == [True]
        daemon.start()  # recovery undoes the create: quota and directory go
        deadline = time.monotonic() + 30
        while any(q["path"] == f"{base}/torn" for q in cluster.quotas.values()):
            assert time.monotonic() < deadline, "the interrupted create was never undone"
            time.sleep(0.1)
        assert not Path(cluster.local(f"{base}/torn")).exists()
        client = daemon.client(driver)
        assert "torn" not in {v["Name"] for v in client.ok("List")["Volumes"]}
        client.ok("Create", Name="torn", Opts={})  # the name is free again
        client.ok("Remove", Name="torn")
    finally:
        daemon.destroy()
