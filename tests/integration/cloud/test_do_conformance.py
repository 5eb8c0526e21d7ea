"""DigitalOcean in the cloud-disk conformance suite (provider, backend, two hosts)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from tests.contracts.cloud import CloudDiskConformance
from tests.servers.digitalocean.server import DoServer
from tests.servers.digitalocean.testbed import DoTestbed

pytest_plugins = ["tests.servers.digitalocean.fixtures"]


class TestDigitalOceanConformance(CloudDiskConformance):
    create_options: ClassVar[dict[str, str]] = {"size": "1G"}
    other_options: ClassVar[dict[str, str]] = {"size": "2G"}

    @pytest.fixture
    def testbed(self, do_server: DoServer, do_token: Path, tmp_path: Path) -> DoTestbed:
        return DoTestbed(do_server, do_token, tmp_path / "testbed")
