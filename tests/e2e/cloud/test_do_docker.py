"""A real dockerd mounting a DigitalOcean volume through Orlop (the API is the fake of
tests/servers/digitalocean/server.py, reached by pydo; the volume a loop device)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from orlop.backends.cloud.digitalocean import labels as tags
from tests.e2e.conftest import PLUGIN_DIR
from tests.servers.digitalocean.server import DoServer
from tests.servers.digitalocean.testbed import DoHost
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique

pytest_plugins = ["tests.servers.digitalocean.fixtures"]


@pytest.fixture
def do_driver(do_host: Callable[..., DoHost]) -> Iterator[tuple[str, DoHost]]:
    host = do_host()
    driver = unique("orlop-do")
    config = {"backend": "digitalocean", "options": {"size": "1G"}, "settings": host.settings}
    daemon = OrlopDaemon({driver: config}, plugin_dir=PLUGIN_DIR)
    try:
        daemon.start()
        yield driver, host
    finally:
        daemon.destroy()


def volumes_named(server: DoServer, name: str) -> list[list[int]]:
    with server.lock:
        return [
            list(v.droplet_ids)
            for v in server.volumes.values()
            if tags.labels_of(v.tags).get("volume") == name
        ]


def test_docker_run_with_a_digitalocean_volume(
    dockerd: Dockerd, do_driver: tuple[str, DoHost], do_server: DoServer
) -> None:
    driver, _host = do_driver
    name = unique("Do.Vol")  # capitals and dots: DigitalOcean names cannot, its tags keep them
    mount = f"type=volume,src={name},dst=/data,volume-driver={driver}"
    image = dockerd.ensure_image()
    try:
        dockerd.run(
            "run", "--rm", "--mount", mount, image, "sh", "-c", "echo kept > /data/f && sync"
        )
        assert volumes_named(do_server, name) == [[]]  # detached after the last unmount
        out = dockerd.run("run", "--rm", "--mount", mount, image, "cat", "/data/f").stdout
        assert out.strip() == "kept"
        inspected = dockerd.run(
            "volume", "inspect", "--format", "{{json .Status.backend_status}}", name
        ).stdout
        assert '"region":"nyc1"' in inspected and '"size_gib":1' in inspected
        created = [
            body
            for method, path, body in do_server.requests
            if path == "/v2/volumes" and method == "POST"
        ]
        assert created and "filesystem_type" not in created[0]  # Orlop formats, not DO
    finally:
        dockerd.run("volume", "rm", name, check=False)
    assert volumes_named(do_server, name) == []
