"""A cancelled operation ends as a cancellation: never a BackendError, never a recorded fault,
and the backend call it waited for finishes before the volume's lock is let go."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext
from orlop.core.model import State
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend(BackendContext("mem", "/nonexistent"))


@pytest.fixture
def harness(backend: MemoryBackend, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(backend, "mem", store_path=str(tmp_path / "orlop.db"))
    yield harness
    harness.close()


def cancel_during(
    harness: Harness, backend: MemoryBackend, method: str, operation: Coroutine[Any, Any, Any]
) -> None:
    """Run `operation`, cancel it while the backend's `method` runs, then let `method` end."""
    gate = backend.gate[method] = threading.Event()
    calls = backend.calls[method]

    async def scenario() -> None:
        task = asyncio.ensure_future(operation)
        while backend.calls[method] == calls:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done(), "the cancellation must wait for the backend call in flight"
        del backend.gate[method]
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    harness.run(scenario())


def test_cancelled_mount_detaches_and_records_no_fault(
    harness: Harness, backend: MemoryBackend
) -> None:
    harness.create("v")
    cancel_during(harness, backend, "attach", harness.service.mount("mem", "v", "c1"))
    volume = harness.get("v")
    assert (volume.state, volume.fault, volume.mounts) == (State.READY, "", 0)
    assert "v" not in backend.attached and backend.calls["detach"] == 1


def test_cancelled_create_leaves_nothing(harness: Harness, backend: MemoryBackend) -> None:
    cancel_during(harness, backend, "create", harness.service.create("mem", "v", {}))
    assert harness.names() == [] and backend.volumes == {}
    assert harness.store.load() == []


def test_cancelled_unmount_is_no_fault_and_recovery_settles_it(
    harness: Harness, backend: MemoryBackend
) -> None:
    harness.create("v")
    harness.mount("v", "c1")
    backend.fail["detach"] = "the detach failed, but nobody was waiting for the answer"
    cancel_during(harness, backend, "detach", harness.service.unmount("mem", "v", "c1"))
    assert harness.get("v").fault == ""
    assert harness.get("v").state == State.DETACHING
    again = harness.restart()
    try:
        assert again.get("v").state == State.READY and again.get("v").fault == ""
    finally:
        again.close()


def test_cancelled_remove_is_finished_by_recovery(harness: Harness, backend: MemoryBackend) -> None:
    harness.create("v")
    backend.fail["remove"] = "lost"
    cancel_during(harness, backend, "remove", harness.service.remove("mem", "v"))
    assert harness.names() == []
    assert [v.state for v in harness.store.load()] == [State.REMOVING]
    again = harness.restart()
    try:
        assert again.names() == [] and again.store.load() == [] and backend.volumes == {}
    finally:
        again.close()


def test_cancelled_recovery_records_no_fault(
    harness: Harness, backend: MemoryBackend, tmp_path: Path
) -> None:
    harness.create("leaked")
    backend.attached.add("leaked")  # attached, and no container holds it
    harness.close()
    again = Harness(backend, "mem", store_path=str(tmp_path / "orlop.db"))
    try:
        cancel_during(again, backend, "detach", again.service.recover())
        assert [v.fault for v in again.store.load()] == [""]
        assert again.get("leaked").fault == ""
    finally:
        again.close()
