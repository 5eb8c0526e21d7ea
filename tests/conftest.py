"""Shared fixtures. Rings: unit (no root), integration (root, real mounts), e2e (real dockerd)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.daemon import OrlopDaemon
from tests.support.names import unique


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test's ring is its directory: tests/unit, tests/integration, tests/e2e.
    for item in items:
        for ring in ("unit", "integration", "e2e"):
            if f"{os.sep}{ring}{os.sep}" in str(item.path):
                item.add_marker(getattr(pytest.mark, ring))
        if ("integration" in item.keywords or "e2e" in item.keywords) and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root (mounts, loop devices, dockerd)"))


@pytest.fixture
def driver_name() -> str:
    return unique()


@pytest.fixture
def directory_daemon(driver_name: str) -> Iterator[OrlopDaemon]:
    """An orlop daemon serving one directory driver on sockets in a private directory."""
    daemon = OrlopDaemon({driver_name: {"backend": "directory"}})
    try:
        yield daemon.start()
    finally:
        daemon.destroy()
