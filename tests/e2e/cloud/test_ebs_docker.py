"""A real dockerd mounting an EBS volume through Orlop (EC2 is moto; the disk a loop device)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import PLUGIN_DIR
from tests.servers.ec2.server import MotoServer, SimulatedHost
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique

pytest_plugins = ["tests.servers.ec2.fixtures"]


@pytest.fixture
def ebs_driver(ec2_host: Callable[..., SimulatedHost]) -> Iterator[tuple[str, SimulatedHost]]:
    host = ec2_host()
    driver = unique("orlop-ebs")
    daemon = OrlopDaemon({driver: host.driver_config(size="1G")}, plugin_dir=PLUGIN_DIR)
    try:
        daemon.start()
        yield driver, host
    finally:
        daemon.destroy()


def attached_to(moto: MotoServer, name: str) -> list[str]:
    found = moto.client().describe_volumes(
        Filters=[{"Name": "tag:orlop:volume", "Values": [name]}]
    )["Volumes"]
    return [a["InstanceId"] for v in found for a in v["Attachments"] if a["State"] != "detached"]


def test_docker_run_with_an_ebs_volume(
    dockerd: Dockerd, ebs_driver: tuple[str, SimulatedHost], moto: MotoServer
) -> None:
    driver, host = ebs_driver
    name = unique("ebs-vol")
    mount = f"type=volume,src={name},dst=/data,volume-driver={driver}"
    image = dockerd.ensure_image()
    try:
        dockerd.run(
            "run", "--rm", "--mount", mount, image, "sh", "-c", "echo kept > /data/f && sync"
        )
        assert attached_to(moto, name) == []  # detached after the container's last unmount
        out = dockerd.run("run", "--rm", "--mount", mount, image, "cat", "/data/f").stdout
        assert out.strip() == "kept"
        inspected = dockerd.run(
            "volume", "inspect", "--format", "{{json .Status.backend_status}}", name
        ).stdout
        assert '"volume_id":"vol-' in inspected and '"availability_zone":"us-east-1a"' in inspected
    finally:
        dockerd.run("volume", "rm", name, check=False)
    assert (
        moto.client().describe_volumes(Filters=[{"Name": "tag:orlop:volume", "Values": [name]}])[
            "Volumes"
        ]
        == []
    )
    assert host.node.appeared  # the node side presented a real device
