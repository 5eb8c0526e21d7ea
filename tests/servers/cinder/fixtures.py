"""pytest fixtures for the Cinder tests: the real Cinder and our Nova, once per session.

A test module loads them with `pytest_plugins = ["tests.servers.cinder.fixtures"]`,
so only Cinder tests pay Cinder's start (15 to 20 s, once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.cinder.nova import NovaServer
from tests.servers.cinder.testbed import CinderTestbed, start_cinder_cloud
from tests.servers.cinder.venv import CinderServer
from tests.support.names import unique


@pytest.fixture(scope="session")
def cinder_cloud() -> Iterator[tuple[CinderServer, NovaServer]]:
    with contextlib.ExitStack() as stack:
        yield start_cinder_cloud(stack)


@pytest.fixture
def cinder_testbed(
    cinder_cloud: tuple[CinderServer, NovaServer], tmp_path: Path
) -> Iterator[CinderTestbed]:
    cinder, nova = cinder_cloud
    testbed = CinderTestbed(cinder, nova, tmp_path, unique("ns"))
    try:
        yield testbed
    finally:
        for host in testbed.hosts:  # first: Cinder then lets the attachments go
            nova.servers.pop(host.instance, None)
        testbed.cleanup()
