"""A Create that fails after its storage was made is undone (the storage removed); a discovery
pass that listed the storage before the undo must not adopt it afterwards: that would leave a
volume whose storage is gone ("no longer exists: remove the volume from Orlop"), as the chaos
run found on PowerFlex (a create's answer lost, then a 500: undone while discovery listed)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext, Capabilities, VolumeRef
from orlop.core.model import BackendError, OrlopError
from orlop.core.registry import Driver
from orlop.core.service import VolumeService
from orlop.core.store import Store
from tests.support.memory_backend import MemoryBackend

pytestmark = pytest.mark.unit


class RacingBackend(MemoryBackend):
    """A listing backend whose create makes the storage, waits until a listing saw it, then
    fails (the answer lost)."""

    capabilities = Capabilities(scope="global")
    discover_interval = 1.0

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.made, self.listed = threading.Event(), threading.Event()

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        super().create(volume)
        self.made.set()
        assert self.listed.wait(10)
        raise BackendError("the cloud's answer was lost")

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        assert self.made.wait(10)
        found = [(name, {}, {}) for name in self.volumes]
        self.listed.set()
        return found


def test_a_listing_begun_before_a_failed_create_was_undone_adopts_nothing(tmp_path: Path) -> None:
    backend = RacingBackend(BackendContext("mem", str(tmp_path)))
    store = Store(str(tmp_path / "orlop.db"))
    service = VolumeService(store, [Driver("mem", backend, {}, 0)])
    loop = asyncio.new_event_loop()

    async def both() -> list[Any]:
        return await asyncio.gather(
            service.create("mem", "raced", {}), service.discover("mem"), return_exceptions=True
        )

    try:
        created, adopted = loop.run_until_complete(both())
        assert isinstance(created, OrlopError) and "answer was lost" in str(created)
        assert "raced" not in backend.volumes  # undone
        assert adopted == []
        assert [v.name for v in service.list("mem")] == []
    finally:
        service.close()
        store.close()
        loop.close()
