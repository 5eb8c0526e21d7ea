"""The conformance suite for the directory backend, plain and as a tmpfs mount."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.directory.backend import DirectoryBackend
from orlop.host.run import run
from tests.contracts.backend import BackendConformance


class TestDirectoryConformance(BackendConformance):
    other_options = {"mode": "0700"}

    @pytest.fixture
    def backend(self, tmp_path: Path) -> DirectoryBackend:
        return DirectoryBackend(BackendContext("dir", str(tmp_path / "driver")))


class TestTmpfsDirectoryConformance(BackendConformance):
    persistent = False
    create_options = {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}
    other_options = {"type": "tmpfs", "device": "tmpfs", "o": "size=16m"}
    size_limit = 8 * 1024 * 1024

    @pytest.fixture
    def backend(self, tmp_path: Path) -> DirectoryBackend:
        return DirectoryBackend(BackendContext("tmpfs", str(tmp_path / "driver")))


class TestImageFileDirectoryConformance(BackendConformance):
    """Docker local's `type=ext4 device=/path/image`: a filesystem image mounted per use."""

    size_limit = 32 * 1024 * 1024

    @pytest.fixture
    def backend(self, tmp_path: Path) -> DirectoryBackend:
        image = tmp_path / "fs.img"
        with open(image, "wb") as file:
            file.truncate(self.size_limit)
        run(["mkfs.ext4", "-q", "-F", str(image)])
        options = {"type": "ext4", "device": str(image)}
        type(self).create_options = options
        type(self).other_options = {**options, "o": "noatime"}
        return DirectoryBackend(BackendContext("image", str(tmp_path / "driver")))
