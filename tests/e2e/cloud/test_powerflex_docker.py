"""A real dockerd mounting a PowerFlex volume through Orlop (the gateway is the HTTPS fake of
tests/servers/powerflex/server.py, reached by PyPowerFlex; the volume a loop device)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from orlop.backends.cloud.powerflex import labels as names
from tests.e2e.conftest import PLUGIN_DIR
from tests.servers.powerflex.server import PowerFlexGateway
from tests.servers.powerflex.testbed import PfHost
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique

pytest_plugins = ["tests.servers.powerflex.fixtures"]


@pytest.fixture
def pf_driver(pf_host: Callable[..., PfHost]) -> Iterator[tuple[str, PfHost]]:
    host = pf_host()
    driver = unique("orlop-pf")
    config = {"backend": "powerflex", "options": {"size": "8G"}, "settings": host.settings}
    daemon = OrlopDaemon({driver: config}, plugin_dir=PLUGIN_DIR)
    try:
        daemon.start()
        yield driver, host
    finally:
        daemon.destroy()


def mappings(gateway: PowerFlexGateway, namespace: str, name: str) -> list[list[str]]:
    with gateway.lock:
        return [
            [m["sdcId"] for m in v["mappedSdcInfo"] or []]
            for v in gateway.volumes.values()
            if names.decode("o", namespace, v["name"]) == (True, name)
        ]


def test_docker_run_with_a_powerflex_volume(
    dockerd: Dockerd, pf_driver: tuple[str, PfHost], pf_gateway: PowerFlexGateway
) -> None:
    driver, host = pf_driver
    namespace = host.settings["namespace"]
    name = unique("Pf.Vol")
    mount = f"type=volume,src={name},dst=/data,volume-driver={driver}"
    image = dockerd.ensure_image()
    try:
        dockerd.run(
            "run", "--rm", "--mount", mount, image, "sh", "-c", "echo kept > /data/f && sync"
        )
        assert mappings(pf_gateway, namespace, name) == [[]]  # unmapped after the last unmount
        out = dockerd.run("run", "--rm", "--mount", mount, image, "cat", "/data/f").stdout
        assert out.strip() == "kept"
        inspected = dockerd.run(
            "volume", "inspect", "--format", "{{json .Status.backend_status}}", name
        ).stdout
        assert '"size_gib":8' in inspected and "8 GiB steps" in inspected
    finally:
        dockerd.run("volume", "rm", name, check=False)
    assert mappings(pf_gateway, namespace, name) == []
