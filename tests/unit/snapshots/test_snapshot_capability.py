"""The service asks a driver's capabilities (and protocols) before an optional operation,
never its class."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends.base import BackendContext, Capabilities
from orlop.backends.directory.backend import DirectoryBackend
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


def test_driver_without_resize_is_refused_clearly(tmp_path: Path) -> None:
    harness = Harness(DirectoryBackend(BackendContext("plain", str(tmp_path))), "plain")
    try:
        harness.create("vol")
        with pytest.raises(InvalidOption, match=r"plain \(directory\) cannot resize volumes"):
            harness.run(harness.service.resize("plain", "vol", 1 << 30))
    finally:
        harness.close()


class ClaimsTooMuch(MemoryBackend):
    """Says it can snapshot and resize, but implements neither protocol."""

    capabilities = Capabilities(snapshot=True, resize=True)


def test_a_capability_needs_its_protocol_too() -> None:
    backend = ClaimsTooMuch(BackendContext("boast", "/nonexistent"))
    harness = Harness(backend, "boast")
    try:
        harness.create("vol")
        assert harness.service.snapshot_drivers() == []
        with pytest.raises(InvalidOption, match="cannot take snapshots"):
            harness.run(harness.service.create_snapshot("boast", "vol", "s1"))
        with pytest.raises(InvalidOption, match="cannot resize volumes"):
            harness.run(harness.service.resize("boast", "vol", 1 << 30))
    finally:
        harness.close()
