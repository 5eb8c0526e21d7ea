"""The service asks a driver's capabilities before a snapshot call, never its class."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.core.model import InvalidOption
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend


def test_driver_without_snapshots_is_refused_clearly(tmp_path: Path) -> None:
    harness = Harness(MemoryBackend(BackendContext("plain", str(tmp_path))), "plain")
    try:
        harness.create("vol")
        assert harness.service.snapshot_drivers() == []
        with pytest.raises(InvalidOption, match=r"driver plain \(memory\) cannot take snap"):
            harness.run(harness.service.create_snapshot("plain", "vol", "s1"))
        with pytest.raises(InvalidOption, match="drivers that can: none"):
            harness.run(harness.service.list_snapshots("plain"))
        with pytest.raises(InvalidOption, match="cannot take snapshots"):
            harness.run(harness.service.delete_snapshot("plain", "s1"))
        assert harness.run(harness.service.discover("plain")) == []  # local: nothing to find
    finally:
        harness.close()
