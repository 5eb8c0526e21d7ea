"""A real dockerd mounting a vSphere volume through Orlop (vCenter is vcsim; the disk a loop
device the presenter shows where the guest would see it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import PLUGIN_DIR
from tests.servers.vsphere.vcsim import VsphereTestbed
from tests.support.cloud.testbed import CloudHost
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique

pytest_plugins = ["tests.servers.vsphere.fixtures"]


@pytest.fixture
def vsphere_driver(vsphere_testbed: VsphereTestbed) -> Iterator[tuple[str, CloudHost]]:
    host = vsphere_testbed.host()
    driver = unique("orlop-vsphere")
    daemon = OrlopDaemon({driver: host.driver_config(size="64M")}, plugin_dir=PLUGIN_DIR)
    try:
        daemon.start()
        yield driver, host
    finally:
        daemon.destroy()


def test_docker_run_with_a_vsphere_volume(
    dockerd: Dockerd, vsphere_driver: tuple[str, CloudHost], vsphere_testbed: VsphereTestbed
) -> None:
    driver, _host = vsphere_driver
    name = unique("vs-vol")
    mount = f"type=volume,src={name},dst=/data,volume-driver={driver}"
    image = dockerd.ensure_image()

    def disks() -> list[dict[str, object]]:
        return [d for d in vsphere_testbed.cloud_disks(vsphere_testbed.namespace)
                if d["volume"] == name]  # fmt: skip

    try:
        dockerd.run(
            "run", "--rm", "--mount", mount, image, "sh", "-c", "echo kept > /data/f && sync"
        )
        [disk] = disks()
        assert disk["attached_to"] == []  # detached after the container's last unmount
        out = dockerd.run("run", "--rm", "--mount", mount, image, "cat", "/data/f").stdout
        assert out.strip() == "kept"
        inspected = dockerd.run(
            "volume", "inspect", "--format", "{{json .Status.backend_status}}", name
        ).stdout
        assert '"disk_id":"[LocalDS_0] orlop-volumes/' in inspected
        assert '"diskformat":"thin"' in inspected
    finally:
        dockerd.run("volume", "rm", name, check=False)
    assert disks() == []  # no VMDK left on the datastore
    assert sum(vsphere_testbed.presenter.appeared.values()) == 2  # a real device, each run
