"""State written by an earlier Orlop is read by this one: volumes, snapshots, the block journal.

`state/main-258ba75.tar.gz` holds the state directories of a directory driver and a loopfile
driver as `state/make_state.py` left them, run with the code of main at 258ba75 (before the
local backends became plain objects composed from their helpers). Each volume holds `table` =
"version 2" and a snapshot `before` of it at "version 1".
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.directory.backend import DirectoryBackend
from orlop.backends.loopfile.provider import LoopFileBackend
from tests.support.block import cleanup

ARCHIVE = Path(__file__).parent / "state" / "main-258ba75.tar.gz"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(tmp_path, filter="tar")
    try:
        yield tmp_path
    finally:
        cleanup(str(tmp_path))


def read(path: str) -> str:
    with open(os.path.join(path, "table")) as file:
        return file.read()


def check(backend: DirectoryBackend | LoopFileBackend, volume: VolumeRef) -> None:
    (snapshot,) = backend.list_snapshots(None)
    assert (snapshot["name"], snapshot["volume"]) == ("before", volume.name)
    assert read(backend.attach(volume)) == "version 2"
    backend.detach(volume)
    backend.restore_snapshot(volume, "before")
    assert read(backend.attach(volume)) == "version 1"
    backend.detach(volume)
    options = backend.options.validate({"from_snapshot": "before", **volume.options}, {})
    clone = VolumeRef("clone", options)
    backend.validate(clone.name, options)
    clone.record = backend.create(clone)
    assert read(backend.attach(clone)) == "version 1"
    backend.detach(clone)


def test_directory_state_of_main_is_read(state: Path) -> None:
    backend = DirectoryBackend(BackendContext("compat-dir", str(state / "dir")))
    check(backend, VolumeRef("db", {}))


def test_loopfile_state_of_main_is_read(state: Path) -> None:
    backend = LoopFileBackend(BackendContext("compat-block", str(state / "block")))
    options = backend.options.validate({"size": "16M", "fs": "ext4"}, {})
    volume = VolumeRef("img", options, {"image": str(state / "block" / "images" / "img.img")})
    check(backend, volume)
    # The journal says formatted: the volume was mounted, never formatted again.
    assert backend.journal.get("img").get("formatted") is True
