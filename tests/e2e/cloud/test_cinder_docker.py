"""A real dockerd mounting a Cinder volume through Orlop: the real Cinder, our Nova, the disk
a loop device at /dev/disk/by-id/virtio-<volume id[:20]> in the host's by-id directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import PLUGIN_DIR
from tests.servers.cinder.testbed import CinderTestbed
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique

pytest_plugins = ["tests.servers.cinder.fixtures"]
# openstacksdk warns of its own future changes (PendingDeprecationWarning) on every call
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture
def cinder_driver(cinder_testbed: CinderTestbed) -> Iterator[str]:
    host = cinder_testbed.host()
    driver = unique("orlop-cinder")
    daemon = OrlopDaemon({driver: host.driver_config(size="1G")}, plugin_dir=PLUGIN_DIR)
    try:
        daemon.start()
        yield driver
    finally:
        daemon.destroy()


def test_docker_run_with_a_cinder_volume(
    dockerd: Dockerd, cinder_driver: str, cinder_testbed: CinderTestbed
) -> None:
    name = unique("cinder-vol")
    mount = f"type=volume,src={name},dst=/data,volume-driver={cinder_driver}"
    image = dockerd.ensure_image()
    namespace = cinder_testbed.namespace
    try:
        dockerd.run(
            "run", "--rm", "--mount", mount, image, "sh", "-c", "echo kept > /data/f && sync"
        )
        [disk] = cinder_testbed.cloud_disks(namespace)
        assert disk["volume"] == name and disk["attached_to"] == []  # detached after the run
        assert disk["status"] == "available" and disk["size"] == 1024**3
        out = dockerd.run("run", "--rm", "--mount", mount, image, "cat", "/data/f").stdout
        assert out.strip() == "kept"
        inspected = dockerd.run("volume", "inspect", "--format", "{{json .Status}}", name).stdout
        assert disk["id"] in inspected
    finally:
        dockerd.run("volume", "rm", name, check=False)
    assert cinder_testbed.cloud_disks(namespace) == []
    assert cinder_testbed.nova.presenter.appeared[disk["id"]] == 2  # a real device, twice
