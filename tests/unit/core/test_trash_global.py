"""On a global driver, a purge of the trash on one host never deletes a disk another host has
attached: Orlop knows from the cloud's own attachment list, read fresh at the purge (the cloud
layer's Remove refuses a disk attached elsewhere, naming the holder); the volume stays in the
trash and a later sweep frees it once the other host let go. Over the in-memory cloud."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext, VolumeRef
from orlop.core.model import Conflict
from orlop.core.registry import Driver
from orlop.core.service import VolumeService
from orlop.core.store import Store
from tests.support.cloud.memory import MemoryCloud
from tests.support.memory_backend import MemoryBackend
from tests.unit.cloud.test_layer_decisions import Host, make_host, volume_on

pytestmark = pytest.mark.unit


class CloudDisksBackend(MemoryBackend):
    """The service's backend for host A: create and remove are the cloud layer's own."""

    def __init__(self, context: BackendContext, host: Host) -> None:
        super().__init__(context)
        self.host = host

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        return self.host.adoption.create(volume)

    def remove(self, volume: VolumeRef) -> None:
        self.host.adoption.remove(volume)


def test_a_prune_on_one_host_never_deletes_a_disk_another_host_has_attached(
    tmp_path: Path,
) -> None:
    cloud = MemoryCloud(settle_reads=2)
    a, b = make_host(cloud, "i-a", tmp_path), make_host(cloud, "i-b", tmp_path)
    backend = CloudDisksBackend(BackendContext("cloud", str(tmp_path)), a)
    store = Store(str(tmp_path / "a.db"))
    service = VolumeService(store, [Driver("cloud", backend, {}, 3600.0)])
    loop = asyncio.new_event_loop()
    try:
        made = loop.run_until_complete(service.create("cloud", "shared", {}))
        disk_id = made.record["disk_id"]
        on_b = volume_on(b, "shared")
        b.attacher.attach(on_b)  # host B mounts it
        loop.run_until_complete(service.remove("cloud", "shared"))  # `docker volume prune` on A
        later = time.time() + 7200
        assert loop.run_until_complete(service.trash.sweep(now=later)) == []
        assert cloud.holders(disk_id) == ["i-b"] and cloud.read(disk_id) is not None
        assert [entry.name for entry in service.trash.list()] == ["shared"]
        with pytest.raises(Conflict, match="attached to instance i-b: unmount it there first"):
            loop.run_until_complete(service.trash.purge("shared"))
        b.attacher.detach(on_b)  # B let go: the next sweep frees it
        assert loop.run_until_complete(service.trash.sweep(now=later)) == ["shared"]
        assert cloud.read(disk_id) is None
    finally:
        service.close()
        store.close()
        loop.close()
