"""PowerFlex in the cloud-disk conformance suite (provider, backend, two hosts)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from tests.contracts.cloud import CloudDiskConformance
from tests.servers.powerflex.server import PowerFlexGateway, Tls
from tests.servers.powerflex.testbed import PowerFlexTestbed

pytest_plugins = ["tests.servers.powerflex.fixtures"]


class TestPowerFlexConformance(CloudDiskConformance):
    create_options: ClassVar[dict[str, str]] = {"size": "8G"}
    other_options: ClassVar[dict[str, str]] = {"size": "16G"}
    shared_fence = False  # no labels another host reads: the SDC mapping is the only fence

    @pytest.fixture
    def testbed(
        self, pf_gateway: PowerFlexGateway, pf_tls: Tls, pf_password: Path, tmp_path: Path
    ) -> PowerFlexTestbed:
        root = tmp_path / "testbed"
        root.mkdir()
        return PowerFlexTestbed(pf_gateway, pf_tls, pf_password, root)
