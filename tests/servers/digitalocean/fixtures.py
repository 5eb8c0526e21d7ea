"""pytest fixtures for DigitalOcean tests: the fake API (`server.py`) with real loop
devices for attached volumes. Load with
`pytest_plugins = ["tests.servers.digitalocean.fixtures"]`."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.digitalocean.server import DoServer
from tests.servers.digitalocean.testbed import REGION, TEST_SETTINGS, DoHost
from tests.support.cloud.presenter import DevicePresenter
from tests.support.names import unique


@pytest.fixture
def do_presenter() -> Iterator[DevicePresenter]:
    presenter = DevicePresenter()
    try:
        yield presenter
    finally:
        presenter.destroy()


@pytest.fixture
def do_token(tmp_path: Path) -> Path:
    path = tmp_path / "do-token"
    path.write_text("dop_v1_" + secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def do_server(do_presenter: DevicePresenter, do_token: Path) -> Iterator[DoServer]:
    server = DoServer(do_token.read_text().strip(), do_presenter)
    server.action_delay = 0.1
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def do_host(do_server: DoServer, do_token: Path, tmp_path: Path) -> Callable[..., DoHost]:
    namespace = unique("ns")

    def make(region: str = REGION, **settings: Any) -> DoHost:
        by_id = tmp_path / f"by-id-{len(do_server.droplets)}"
        by_id.mkdir()
        droplet = do_server.add_droplet(region, by_id)
        state = tmp_path / f"state-{droplet}"
        state.mkdir()
        values = {
            "token_file": str(do_token),
            "api_url": do_server.url,
            "metadata_url": do_server.metadata_url(droplet),
            "droplet_id": droplet,
            "region": region,
            "namespace": namespace,
            "by_id_dir": str(by_id),
            **TEST_SETTINGS,
            **settings,
        }
        return DoHost(droplet, values, by_id, state)

    return make
