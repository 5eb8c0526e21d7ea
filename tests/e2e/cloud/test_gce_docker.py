"""A real dockerd mounting a Google Persistent Disk volume through Orlop (Compute Engine is
the test server; the disk a loop device shown where the guest would see it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import PLUGIN_DIR
from tests.servers.gce.testbed import GceTestbed
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique

pytest_plugins = ["tests.servers.gce.fixtures"]


@pytest.fixture
def gce_driver(gce: GceTestbed) -> Iterator[str]:
    host = gce.host()
    driver = unique("orlop-gce")
    daemon = OrlopDaemon({driver: host.driver_config(size="10G")}, plugin_dir=PLUGIN_DIR)
    try:
        daemon.start()
        yield driver
    finally:
        daemon.destroy()


def test_docker_run_with_a_gce_volume(dockerd: Dockerd, gce_driver: str, gce: GceTestbed) -> None:
    driver = gce_driver
    name = unique("gce-vol")
    mount = f"type=volume,src={name},dst=/data,volume-driver={driver}"
    image = dockerd.ensure_image()

    def holders() -> list[list[str]]:
        return [d["attached_to"] for d in gce.cloud_disks(gce.namespace) if d["volume"] == name]

    try:
        dockerd.run(
            "run", "--rm", "--mount", mount, image, "sh", "-c", "echo kept > /data/f && sync"
        )
        assert holders() == [[]]  # detached after the container's last unmount
        out = dockerd.run("run", "--rm", "--mount", mount, image, "cat", "/data/f").stdout
        assert out.strip() == "kept"
        inspected = dockerd.run(
            "volume", "inspect", "--format", "{{json .Status.backend_status}}", name
        ).stdout
        assert f'"disk_name":"orlop-{name}-' in inspected and '"zone":"us-central1-a"' in inspected
        assert '"type":"pd-balanced"' in inspected
    finally:
        dockerd.run("volume", "rm", name, check=False)
    assert holders() == []
    assert gce.session.presenter is not None and gce.session.presenter.appeared
