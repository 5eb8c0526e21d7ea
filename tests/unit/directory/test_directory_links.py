"""A directory volume whose directories were replaced by symbolic links is refused: Orlop never
follows a link out of its state directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.directory.backend import DirectoryBackend
from orlop.core.model import BackendError
from tests.support.harness import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(DirectoryBackend(BackendContext("dir", str(tmp_path / "state"))), "dir")
    yield harness
    harness.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the state directory, with a file in it."""
    target = tmp_path / "outside"
    target.mkdir(mode=0o755)
    (target / "secret").write_text("host data")
    return target


def volume_dir(harness: Harness, name: str) -> Path:
    return Path(harness.get(name).mountpoint).parent


def test_data_replaced_by_a_link_is_refused(harness: Harness, outside: Path) -> None:
    harness.create("v")
    data = Path(harness.get("v").mountpoint)
    data.rmdir()
    data.symlink_to(outside)
    with pytest.raises(BackendError, match=r"_data is a symbolic link; Orlop does not follow"):
        harness.mount("v")
    assert harness.get("v").mounts == 0
    directory = volume_dir(harness, "v")
    harness.remove("v")  # the link goes, never what it points to
    assert (outside / "secret").read_text() == "host data"
    assert not os.path.lexists(directory)


def test_volume_directory_replaced_by_a_link_is_refused(harness: Harness, outside: Path) -> None:
    harness.create("v")
    directory = volume_dir(harness, "v")
    os.rename(directory, outside.parent / "moved")
    (outside / "_data").mkdir()
    directory.symlink_to(outside)
    with pytest.raises(BackendError, match=r"/v is a symbolic link"):
        harness.mount("v")
    harness.remove("v")
    assert not os.path.lexists(directory)
    assert (outside / "secret").read_text() == "host data" and (outside / "_data").is_dir()


def test_create_over_a_link_changes_nothing_it_points_to(harness: Harness, outside: Path) -> None:
    root = Path(harness.backend.root)  # type: ignore[attr-defined]
    (root / "planted").mkdir(mode=0o701)
    (root / "planted" / "_data").symlink_to(outside)
    with pytest.raises(BackendError, match="symbolic link"):
        harness.create("planted", mode="0700")
    assert outside.stat().st_mode & 0o777 == 0o755
    assert harness.names() == []


def test_a_linked_volumes_root_is_refused(tmp_path: Path, outside: Path) -> None:
    state = tmp_path / "state"
    backend = DirectoryBackend(BackendContext("dir", str(state)))
    harness = Harness(backend, "dir")
    try:
        os.rmdir(backend.root)
        os.symlink(outside, backend.root)
        with pytest.raises(BackendError, match=r"/volumes is a symbolic link"):
            harness.create("v")
        assert sorted(os.listdir(outside)) == ["secret"]  # nothing made there
    finally:
        harness.close()
