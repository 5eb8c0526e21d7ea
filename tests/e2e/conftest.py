"""End-to-end fixtures: one private dockerd per session, one orlop daemon per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique

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


@pytest.fixture(scope="session")
def _e2e_directory_daemon() -> Iterator[OrlopDaemon]:
    # One driver name and state for the session: dockerd remembers every driver it has
    # used and, looking up a volume name it does not know, retries each dead one for ~30 s.
    daemon = OrlopDaemon({unique("orlop-e2e"): {"backend": "directory"}}, plugin_dir=PLUGIN_DIR)
    try:
        yield daemon
    finally:
        daemon.destroy()


@pytest.fixture
def orlop_e2e(_e2e_directory_daemon: OrlopDaemon) -> Iterator[OrlopDaemon]:
    """A running orlop daemon (directory driver) whose socket dockerd discovers.

    The process is new for each test (tests kill and restart it); driver and state persist.
    """
    daemon = _e2e_directory_daemon
    try:
        yield daemon.start()
    finally:
        daemon.stop()
