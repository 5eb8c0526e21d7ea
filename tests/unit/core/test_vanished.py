"""Discovery forgets a volume whose storage another host deleted (the `Vanishing` protocol),
and only then: idle, READY, not listed, and the backend's own read says it is gone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext, Capabilities, VolumeRef
from tests.support.memory_backend import MemoryBackend
from tests.unit.core.test_trash import Host

pytestmark = pytest.mark.unit


class VanishingBackend(MemoryBackend):
    """Global storage that lists its volumes and can say one is gone."""

    capabilities = Capabilities(scope="global")
    discover_interval = 1.0

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.hidden: set[str] = set()  # there, but missing from a listing

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        return [(name, {}, {}) for name in self.volumes if name not in self.hidden]

    def vanished(self, volume: VolumeRef) -> bool:
        self._enter("vanished")
        return volume.name not in self.volumes


def test_a_volume_deleted_elsewhere_leaves_the_list(tmp_path: Path) -> None:
    backend = VanishingBackend(BackendContext("mem", str(tmp_path)))
    host = Host(tmp_path / "orlop.db", backend, trash=0)
    for name in ("kept", "deleted", "missed", "mounted"):
        host.run(host.service.create("mem", name, {}))
    host.run(host.service.mount("mem", "mounted", "c1"))
    del backend.volumes["deleted"]  # another host's Remove (a controller's DeleteVolume)
    backend.hidden.add("missed")  # a listing that missed it: the read says it is there
    del backend.volumes["mounted"]  # in use here: never forgotten under a container
    host.run(host.service.discover("mem"))
    assert host.names() == ["kept", "missed", "mounted"]
    assert backend.calls["vanished"] == 2  # the unlisted idle ones only
    host = host.restart()  # forgotten in the store too
    assert "deleted" not in host.names()
    host.close()
