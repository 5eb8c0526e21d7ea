"""Pytest fixtures for GCE tests (`pytest_plugins = ["tests.servers.gce.fixtures"]`).

One server per test session (`gce_session`), shared by every GCE test; each test gets its own
namespace and instances (`gce`), and its teardown asserts the server met nothing the Compute
v1 discovery document forbids, and deletes what the test left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.gce.testbed import GceSession, GceTestbed, start_session, stop_session


@pytest.fixture(scope="session")
def gce_session() -> Iterator[GceSession]:
    """The GCE test server for the whole session, with a device presenter (needs root)."""
    session = start_session(with_devices=True)
    try:
        yield session
    finally:
        stop_session(session)


@pytest.fixture
def gce(gce_session: GceSession) -> Iterator[GceTestbed]:
    """A namespace of its own on the session's server; no discovery-document violations."""
    testbed = GceTestbed(gce_session)
    seen = len(gce_session.server.violations)
    try:
        yield testbed
    finally:
        testbed.destroy()
        gce_session.server.set_delay(0.02)
        gce_session.server.set_unkind()
        new = gce_session.server.violations[seen:]
        assert not new, "the GCE test server met requests or answers the API forbids:\n" + (
            "\n".join(new)
        )
