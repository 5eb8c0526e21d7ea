"""The trash: with `trash: 24h` Remove keeps the storage; restore brings back name, data and
options; purge and expiry (also across a restart) free it; a refused purge keeps it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext, Capabilities
from orlop.config import DriverConfig
from orlop.core.model import BackendError, Conflict, NotFound
from orlop.core.registry import Driver
from orlop.core.service import VolumeService
from orlop.core.store import Store
from orlop.core.trash import parse_duration
from tests.support.memory_backend import MemoryBackend

pytestmark = pytest.mark.unit
DAY = 86400.0


class Host:
    """A service over a store file with one memory driver `mem`; `restart` keeps both."""

    def __init__(self, path: Path, backend: MemoryBackend, trash: float = DAY) -> None:
        self.path, self.backend, self.trash = path, backend, trash
        self.loop = asyncio.new_event_loop()
        self.store = Store(str(path))
        self.service = VolumeService(self.store, [Driver("mem", backend, {}, trash)])

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def names(self) -> list[str]:
        return sorted(v.name for v in self.service.list("mem"))

    def restart(self) -> Host:
        self.close()
        again = Host(self.path, self.backend, self.trash)
        again.run(again.service.recover())
        return again

    def close(self) -> None:
        self.service.close()
        self.store.close()
        self.loop.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    backend = MemoryBackend(BackendContext("mem", str(tmp_path)))
    made = Host(tmp_path / "orlop.db", backend)
    yield made
    made.close()


def test_remove_keeps_the_storage_and_restore_brings_back_name_data_and_options(host: Host) -> None:
    host.run(host.service.create("mem", "keep", {"size": "1G", "label": "db"}))
    host.backend.volumes["keep"]["files"]["a"] = b"data"
    host.run(host.service.remove("mem", "keep"))
    assert host.names() == []
    assert "keep" in host.backend.volumes and host.backend.calls["remove"] == 0
    [entry] = host.service.trash.list()
    assert entry.name == "keep" and entry.expires_at - entry.removed_at == DAY
    with pytest.raises(NotFound):
        host.service.get("mem", "keep")
    with pytest.raises(Conflict, match=r"in the trash until .*orlop trash restore keep"):
        host.run(host.service.create("mem", "keep", {}))
    host = host.restart()  # the trash outlives a restart
    restored = host.run(host.service.trash.restore("keep"))
    assert restored.options == {"size": str(1024**3), "label": "db"}
    assert host.service.get("mem", "keep").options == restored.options
    assert host.backend.volumes["keep"]["files"]["a"] == b"data"
    assert host.service.trash.list() == []
    host = host.restart()
    assert host.names() == ["keep"]
    host.close()


def test_purge_deletes_the_storage_and_frees_the_name(host: Host) -> None:
    for name in ("one", "two"):
        host.run(host.service.create("mem", name, {}))
        host.run(host.service.remove("mem", name))
    assert host.run(host.service.trash.purge("one")) == ["one"]
    assert "one" not in host.backend.volumes and "two" in host.backend.volumes
    assert host.run(host.service.trash.purge()) == ["two"]
    assert host.backend.volumes == {} and host.service.trash.list() == []
    host.run(host.service.create("mem", "one", {}))
    assert host.names() == ["one"]
    with pytest.raises(NotFound, match="not in the trash"):
        host.run(host.service.trash.purge("two"))


def test_expiry_frees_the_storage_across_a_restart(tmp_path: Path) -> None:
    backend = MemoryBackend(BackendContext("mem", str(tmp_path)))
    host = Host(tmp_path / "orlop.db", backend, trash=0.2)
    host.run(host.service.create("mem", "brief", {}))
    host.run(host.service.remove("mem", "brief"))
    assert host.run(host.service.trash.sweep()) == []  # not yet
    host = host.restart()
    time.sleep(0.3)
    assert host.run(host.service.trash.sweep()) == ["brief"]
    assert "brief" not in backend.volumes
    host = host.restart()
    assert host.service.trash.list() == [] and host.names() == []
    host.close()


def test_a_purge_the_storage_refuses_keeps_the_volume_in_the_trash(host: Host) -> None:
    host.run(host.service.create("mem", "held", {}))
    host.run(host.service.remove("mem", "held"))
    host.backend.fail["remove"] = "disk vol-1 (held) is attached to instance i-2: unmount it there"
    assert host.run(host.service.trash.sweep(now=time.time() + 2 * DAY)) == []
    assert [entry.name for entry in host.service.trash.list()] == ["held"]
    assert "held" in host.backend.volumes
    host.backend.fail["remove"] = "still attached elsewhere"
    with pytest.raises(BackendError, match="still attached elsewhere"):
        host.run(host.service.trash.purge("held"))
    assert host.run(host.service.trash.sweep(now=time.time() + 2 * DAY)) == ["held"]


def test_trash_off_deletes_at_remove(tmp_path: Path) -> None:
    backend = MemoryBackend(BackendContext("mem", str(tmp_path)))
    host = Host(tmp_path / "orlop.db", backend, trash=0.0)
    host.run(host.service.create("mem", "gone", {}))
    host.run(host.service.remove("mem", "gone"))
    assert "gone" not in backend.volumes and host.service.trash.list() == []
    host.close()


def test_the_trash_setting_parses_durations_and_refuses_others() -> None:
    assert parse_duration("24h") == DAY and parse_duration("30m") == 1800
    assert parse_duration("7d") == 7 * DAY and parse_duration("off") == 0
    assert DriverConfig(backend="directory").trash_seconds == 0
    assert DriverConfig(backend="directory", trash="2h").trash_seconds == 7200
    with pytest.raises(ValueError, match="not a duration: use a number with s, m, h or d"):
        DriverConfig(backend="directory", trash="tomorrow")


class ListingBackend(MemoryBackend):
    """A global backend whose storage lists its volumes, as shares and cloud disks do."""

    capabilities = Capabilities(scope="global")
    discover_interval = 1.0

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        return [(name, {}, {}) for name in self.volumes]


def test_discovery_does_not_bring_back_a_volume_in_the_trash(tmp_path: Path) -> None:
    backend = ListingBackend(BackendContext("mem", str(tmp_path)))
    host = Host(tmp_path / "orlop.db", backend)
    host.run(host.service.create("mem", "listed", {}))
    host.run(host.service.remove("mem", "listed"))
    time.sleep(0.01)  # a listing begun after the removal
    assert host.run(host.service.discover("mem")) == []
    assert host.names() == [] and [e.name for e in host.service.trash.list()] == ["listed"]
    host = host.restart()
    assert host.run(host.service.discover("mem")) == [] and host.names() == []
    host.close()
