"""The conformance suite for loop-file block volumes, once per filesystem type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.loopfile.provider import LoopFileBackend
from tests.contracts.backend import BackendConformance
from tests.support.block import cleanup, leftovers


class _LoopFileConformance(BackendConformance):
    fs = "ext4"
    size = "64M"
    size_limit = 64 * 1024 * 1024

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[LoopFileBackend]:
        root = str(tmp_path / "driver")
        try:
            yield LoopFileBackend(BackendContext("loop", root))
            # Every test ends with its volumes unmounted or removed: nothing may linger.
            assert leftovers(root) == {"mounts": [], "loop_devices": []}
        finally:
            cleanup(root)


class TestLoopFileExt4Conformance(_LoopFileConformance):
    create_options = {"size": "64M", "fs": "ext4"}
    other_options = {"size": "128M", "fs": "ext4"}


class TestLoopFileXfsConformance(_LoopFileConformance):
    create_options = {"size": "320M", "fs": "xfs"}
    other_options = {"size": "320M", "fs": "ext4"}
    size_limit = 320 * 1024 * 1024


class TestLoopFileBtrfsConformance(_LoopFileConformance):
    create_options = {"size": "192M", "fs": "btrfs", "mount_options": "noatime"}
    other_options = {"size": "256M", "fs": "btrfs"}
    size_limit = 192 * 1024 * 1024
