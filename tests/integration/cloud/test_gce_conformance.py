"""Google Persistent Disk through the cloud-disk conformance suite (provider, backend, two
hosts as two daemons) and the block layer, against the Compute v1 test server."""

from __future__ import annotations

import pytest

from tests.contracts.cloud import CloudDiskConformance
from tests.servers.gce.testbed import GceTestbed

pytest_plugins = ["tests.servers.gce.fixtures"]


class TestGceConformance(CloudDiskConformance):
    create_options = {"size": "10G"}  # the smallest pd-balanced disk
    other_options = {"size": "20G"}
    # No size_limit: the suite would fill the volume, and the smallest disk is 10 GiB.

    @pytest.fixture
    def testbed(self, gce: GceTestbed) -> GceTestbed:
        return gce
