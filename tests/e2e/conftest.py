"""End-to-end fixtures: one private dockerd per session, one orlop daemon per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd

PLUGIN_DIR = "/run/docker/plugins"  # dockerd looks for plugin sockets only here


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    daemon = Dockerd()
    try:
        daemon.start()
        daemon.ensure_image()
        yield daemon
    finally:
        daemon.destroy()


@pytest.fixture
def orlop_e2e(driver_name: str) -> Iterator[OrlopDaemon]:
    """An orlop daemon whose driver socket dockerd can discover (unique driver name)."""
    daemon = OrlopDaemon({driver_name: {"backend": "directory"}}, plugin_dir=PLUGIN_DIR)
    try:
        yield daemon.start()
    finally:
        daemon.destroy()
