"""The conformance suite for the network backends: sshfs on a real sshd, S3 on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.fuse.s3 import S3Backend
from orlop.backends.fuse.sshfs import SshfsBackend
from tests.contracts.backend import BackendConformance
from tests.servers.s3.server import S3Server
from tests.servers.sshd.server import Sshd
from tests.support import network_fixtures
from tests.support.names import unique

# Session servers, shared with the other network test modules.
sshd = network_fixtures.sshd
running_sshd = network_fixtures.running_sshd
s3 = network_fixtures.s3
unmount_all = network_fixtures.unmount_all


class TestSshfsConformance(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path, running_sshd: Sshd) -> Iterator[SshfsBackend]:
        base = running_sshd.data / unique("conf")
        base.mkdir()
        options = running_sshd.options(path=str(base))
        type(self).create_options = options
        type(self).other_options = {**options, "readonly": "true"}
        try:
            yield SshfsBackend(BackendContext("ssh", str(tmp_path / "driver")))
        finally:
            unmount_all(str(tmp_path))


class TestS3Conformance(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path, s3: S3Server) -> Iterator[S3Backend]:
        options = s3.options("conformance", prefix=unique("conf"))
        type(self).create_options = options
        type(self).other_options = {**options, "cache_size": "64M"}
        try:
            yield S3Backend(BackendContext("s3", str(tmp_path / "driver")))
        finally:
            unmount_all(str(tmp_path))
