"""Fixtures of the block layer's integration tests: a loop-file driver in a temporary root
(every loop device and mount under it undone, even after a failed test), and the service
over it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.loopfile.provider import LoopFileBackend
from tests.support.block import cleanup
from tests.support.harness import Harness


@pytest.fixture
def root(tmp_path: Path) -> Iterator[str]:
    root = str(tmp_path / "driver")
    try:
        yield root
    finally:
        cleanup(root)


@pytest.fixture
def backend(root: str) -> LoopFileBackend:
    return LoopFileBackend(BackendContext("blk", root))


@pytest.fixture
def harness(backend: LoopFileBackend, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(backend, "blk", store_path=str(tmp_path / "orlop.db"))
    try:
        yield harness
    finally:
        for volume in harness.service.list("blk"):
            for mount_id in list(volume.mount_ids):
                with contextlib.suppress(Exception):
                    harness.unmount(volume.name, mount_id)
        harness.close()
