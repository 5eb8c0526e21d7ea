"""pytest fixtures for vsphere tests. A test module loads them with
`pytest_plugins = ["tests.servers.vsphere.fixtures"]`, so only vsphere tests start vcsim
(one per test session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.vsphere.vcsim import Vcsim, VsphereTestbed


@pytest.fixture(scope="session")
def vcsim() -> Iterator[Vcsim]:
    server = Vcsim()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def vsphere_testbed(vcsim: Vcsim, tmp_path: Path) -> Iterator[VsphereTestbed]:
    testbed = VsphereTestbed(vcsim, tmp_path)
    try:
        yield testbed
    finally:
        testbed.destroy()
