"""pytest fixtures for PowerFlex tests: the fake HTTPS gateway (API 3.x and 4.x) with real
loop devices for mapped volumes. Load with
`pytest_plugins = ["tests.servers.powerflex.fixtures"]`."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers.powerflex.server import PowerFlexGateway, Tls
from tests.servers.powerflex.testbed import PfHost, pf_host_factory
from tests.support.cloud.presenter import DevicePresenter


@pytest.fixture(scope="session")
def pf_tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return Tls.make(tmp_path_factory.mktemp("powerflex-tls"))


@pytest.fixture
def pf_presenter() -> Iterator[DevicePresenter]:
    presenter = DevicePresenter()
    try:
        yield presenter
    finally:
        presenter.destroy()


@pytest.fixture
def pf_password(tmp_path: Path) -> Path:
    path = tmp_path / "powerflex-password"
    path.write_text(secrets.token_urlsafe(12) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def pf_api_version() -> str:
    """The gateway's API version; a test parametrizes it to run on 3.x as well."""
    return "4.5"


@pytest.fixture
def pf_gateway(
    pf_api_version: str, pf_tls: Tls, pf_presenter: DevicePresenter, pf_password: Path
) -> Iterator[PowerFlexGateway]:
    gateway = PowerFlexGateway(
        pf_tls, pf_password.read_text().strip(), pf_api_version, presenter=pf_presenter
    )
    try:
        yield gateway.start()
    finally:
        gateway.stop()


@pytest.fixture
def pf_host(
    pf_gateway: PowerFlexGateway, pf_tls: Tls, pf_password: Path, tmp_path: Path
) -> Callable[..., PfHost]:
    return pf_host_factory(pf_gateway, pf_tls, pf_password, tmp_path)
