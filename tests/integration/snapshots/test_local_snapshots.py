"""Snapshots, clones and restore of directory and loopfile volumes, on real host filesystems.

Each backend runs with its state directory on a btrfs, an xfs (reflink=1) and an ext4
filesystem, each on its own loop device: the three snapshot methods (btrfs subvolume,
reflink, copy) are all exercised, and the test checks that the expected one was used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from orlop.backends.base import BackendContext, Restorable, Snapshottable, VolumeRef
from orlop.backends.directory.backend import DirectoryBackend
from orlop.backends.loopfile.provider import LoopFileBackend
from orlop.cli.doctor import snapshot_method_check
from orlop.core.model import Conflict, InvalidOption, NotFound
from orlop.host import btrfs
from orlop.host.clone import snapshot_method
from tests.support.block import cleanup
from tests.support.hostfs import HostFilesystem
from tests.support.names import unique

EXPECTED_METHOD = {"btrfs": "btrfs subvolume", "xfs": "reflink", "ext4": "copy"}


@pytest.fixture(scope="module", params=["btrfs", "xfs", "ext4"])
def hostfs(request: pytest.FixtureRequest) -> Iterator[HostFilesystem]:
    fs = HostFilesystem(request.param, size=2 * 1024**3)
    try:
        yield fs
    finally:
        fs.destroy()


def _context(hostfs: HostFilesystem, kind: str) -> BackendContext:
    driver = unique(kind)
    return BackendContext(driver=driver, state_dir=os.path.join(hostfs.path, driver))


def _volume(backend: DirectoryBackend | LoopFileBackend, name: str, **options: str) -> VolumeRef:
    canonical = backend.options.validate(
        options, {"size": "64M"} if "fs" in backend.options.options else {}
    )
    backend.validate(name, canonical)
    volume = VolumeRef(name, canonical)
    volume.record = backend.create(volume)
    return volume


def _write(path: str, name: str, payload: bytes) -> None:
    with open(os.path.join(path, name), "wb") as file:
        file.write(payload)
        os.fsync(file.fileno())


def _read(path: str, name: str) -> bytes:
    with open(os.path.join(path, name), "rb") as file:
        return file.read()


def test_method_per_filesystem(hostfs: HostFilesystem) -> None:
    assert snapshot_method(hostfs.path) == EXPECTED_METHOD[hostfs.fstype]
    said = snapshot_method_check("directory", os.path.join(hostfs.path, "not", "made", "yet"))
    assert said is not None and said.detail.startswith(EXPECTED_METHOD[hostfs.fstype])
    image = snapshot_method_check("loopfile", hostfs.path)
    assert image is not None
    assert image.detail.startswith("copy" if hostfs.fstype == "ext4" else "reflink")
    assert snapshot_method_check("sshfs", hostfs.path) is None


def test_directory_snapshot_clone_restore(hostfs: HostFilesystem) -> None:
    backend = DirectoryBackend(_context(hostfs, "dir"))
    assert isinstance(backend, Snapshottable) and isinstance(backend, Restorable)
    volume = _volume(backend, "db")
    data = backend.attach(volume)
    assert btrfs.is_subvolume(data) == (hostfs.fstype == "btrfs")
    _write(data, "table", b"version 1")
    os.makedirs(os.path.join(data, "sub"))
    _write(os.path.join(data, "sub"), "deep", b"deep 1")

    made = backend.create_snapshot(volume, "before")
    assert made["method"] == EXPECTED_METHOD[hostfs.fstype]
    assert made["volume"] == "db" and made["name"] == "before"
    with pytest.raises(Conflict, match="already exists"):
        backend.create_snapshot(volume, "before")

    _write(data, "table", b"version 2")
    clone = _volume(backend, "db-test", from_snapshot="before")
    assert _read(backend.attach(clone), "table") == b"version 1"
    assert _read(os.path.join(backend.mountpoint(clone), "sub"), "deep") == b"deep 1"
    _write(backend.mountpoint(clone), "table", b"clone's own")
    live = _volume(backend, "db-live", from_volume="db")
    assert _read(backend.attach(live), "table") == b"version 2"

    backend.restore_snapshot(volume, "before")
    assert _read(data, "table") == b"version 1"
    assert sorted(os.listdir(os.path.dirname(data))) == ["_data"]  # nothing left aside
    assert _read(backend.mountpoint(clone), "table") == b"clone's own"

    assert [s["name"] for s in backend.list_snapshots("db")] == ["before"]
    assert backend.list_snapshots("db-test") == []
    backend.delete_snapshot("before")
    assert backend.list_snapshots(None) == []
    with pytest.raises(NotFound, match="snapshot before does not exist"):
        _volume(backend, "nope", from_snapshot="before")
    with pytest.raises(NotFound, match="snapshot before does not exist"):
        backend.restore_snapshot(volume, "before")
    for each in (volume, clone, live):
        backend.remove(each)
    assert os.listdir(backend.root) == []


def test_directory_refusals(hostfs: HostFilesystem) -> None:
    backend = DirectoryBackend(_context(hostfs, "dir"))
    tmpfs = _volume(backend, "scratch", type="tmpfs", device="tmpfs")
    with pytest.raises(InvalidOption, match="plain directory volumes only"):
        backend.create_snapshot(tmpfs, "s")
    with pytest.raises(NotFound, match="volume ghost to clone from does not exist"):
        _volume(backend, "c", from_volume="ghost")
    with pytest.raises(InvalidOption, match="give one of"):
        _volume(backend, "c", from_volume="scratch", from_snapshot="s")
    assert sorted(os.listdir(backend.root)) == ["scratch"]
    backend.remove(tmpfs)


def _sha(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_loopfile_snapshot_clone_restore(hostfs: HostFilesystem) -> None:
    backend = LoopFileBackend(_context(hostfs, "blk"))
    try:
        volume = _volume(backend, "db", size="64M", fs="ext4")
        path = backend.attach(volume)
        _write(path, "table", b"version 1")
        made = backend.create_snapshot(volume, "live")  # mounted: frozen around the copy
        assert made["consistency"].startswith("crash-consistent")
        assert made["method"] == ("copy" if hostfs.fstype == "ext4" else "reflink")
        _write(path, "table", b"version 2")
        with pytest.raises(Conflict, match="mounted"):
            backend.restore_snapshot(volume, "live")
        clone = _volume(backend, "db-clone", from_volume="db", size="64M")
        assert _read(backend.attach(clone), "table") == b"version 2"
        backend.detach(clone)
        backend.detach(volume)

        with pytest.raises(InvalidOption, match=r"size=64\.0M or more"):
            _volume(backend, "small", from_snapshot="live", size="32M")
        bigger = _volume(backend, "bigger", from_snapshot="live", size="128M")
        grown = backend.attach(bigger)
        assert _read(grown, "table") == b"version 1"
        assert os.statvfs(grown).f_blocks * os.statvfs(grown).f_frsize > 100 * 1024**2
        backend.detach(bigger)

        snapshot_image = backend.local.snapshots.data("live")
        backend.restore_snapshot(volume, "live")
        assert _sha(backend.provider.image(volume)) == _sha(snapshot_image)
        assert _read(backend.attach(volume), "table") == b"version 1"
        backend.detach(volume)
        assert [s["name"] for s in backend.list_snapshots(None)] == ["live"]
        backend.delete_snapshot("live")
        for each in (volume, clone, bigger):
            backend.remove(each)
        assert os.listdir(backend.provider.images) == []
    finally:
        cleanup(backend.context.state_dir)
