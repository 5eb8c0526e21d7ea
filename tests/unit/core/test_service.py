"""VolumeService with an in-memory backend: reference counts, idempotency, intent, recovery."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.core.model import BackendError, Conflict, InvalidOption, NotFound, State
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


def test_create_is_idempotent_and_checks_options(harness: Harness, backend: MemoryBackend) -> None:
    first = harness.create("v", size="1G")
    assert harness.create("v", size="1024M") is first  # same size, other spelling
    assert harness.create("v") is first  # docker run's create-on-demand sends no options
    assert backend.calls["create"] == 1
    with pytest.raises(Conflict, match=r"size: 1073741824 → 2147483648"):
        harness.create("v", size="2G")


def test_conflict_message_redacts_secrets(harness: Harness) -> None:
    harness.create("s", password="hunter2")
    with pytest.raises(Conflict) as raised:
        harness.create("s", password="other")
    assert "hunter2" not in str(raised.value) and "other" not in str(raised.value)
    assert harness.service.redacted_options(harness.get("s")) == {"password": "<redacted>"}


def test_failed_create_leaves_nothing(harness: Harness, backend: MemoryBackend) -> None:
    backend.fail["create"] = "disk on fire"
    with pytest.raises(BackendError, match="disk on fire"):
        harness.create("broken")
    assert harness.names() == []
    assert backend.calls["remove"] == 1  # the half-made volume was cleaned up
    assert harness.store.load() == []


def test_bad_option_value(harness: Harness) -> None:
    with pytest.raises(InvalidOption, match="invalid value for option size"):
        harness.create("v", size="10X")
    assert harness.names() == []


def test_attach_on_first_mount_detach_after_last(harness: Harness, backend: MemoryBackend) -> None:
    harness.create("v")
    harness.mount("v", "a")
    harness.mount("v", "b")
    harness.mount("v", "a")  # known ID: no change
    assert harness.get("v").mount_ids == {"a", "b"}
    assert harness.get("v").state == State.ATTACHED
    harness.unmount("v", "a")
    assert "v" in backend.attached
    harness.unmount("v", "nobody")  # unknown ID: no change
    assert harness.get("v").mounts == 1
    harness.unmount("v", "b")
    assert "v" not in backend.attached
    assert backend.calls["detach"] == 1
    assert harness.get("v").state == State.READY


def test_mount_ids_are_persisted(harness: Harness, backend: MemoryBackend) -> None:
    harness.create("v")
    harness.mount("v", "container-1")
    stored = {v.name: v for v in harness.store.load()}
    assert stored["v"].mount_ids == {"container-1"}
    assert stored["v"].state == State.ATTACHED


def test_failed_attach_is_undone(harness: Harness, backend: MemoryBackend) -> None:
    harness.create("v")
    backend.fail["attach"] = "no device"
    with pytest.raises(BackendError, match="no device"):
        harness.mount("v", "a")
    volume = harness.get("v")
    assert volume.mounts == 0 and volume.state == State.READY
    assert backend.calls["detach"] == 1


def test_remove_while_mounted_refused(harness: Harness) -> None:
    harness.create("v")
    harness.mount("v", "a")
    harness.mount("v", "b")
    with pytest.raises(Conflict, match="in use by 2 mounts"):
        harness.remove("v")
    assert harness.names() == ["v"]


def test_failed_remove_keeps_the_volume(harness: Harness, backend: MemoryBackend) -> None:
    harness.create("v")
    backend.fail["remove"] = "busy"
    with pytest.raises(BackendError, match="busy"):
        harness.remove("v")
    assert harness.names() == ["v"]
    assert "remove failed" in harness.get("v").fault
    harness.remove("v")
    assert harness.names() == []


def test_unknown_volume_and_driver(harness: Harness) -> None:
    with pytest.raises(NotFound, match="volume ghost not found"):
        harness.get("ghost")
    with pytest.raises(NotFound, match="no driver named 'other'"):
        harness.service.get("other", "x")
    with pytest.raises(NotFound):
        harness.mount("ghost")


def test_generation_changes_with_list(harness: Harness) -> None:
    before = harness.service.generation["mem"]
    harness.create("v")
    assert harness.service.generation["mem"] > before


def test_operations_on_one_volume_serialise_others_proceed(
    harness: Harness, backend: MemoryBackend
) -> None:
    harness.create("slow")
    harness.create("fast")
    gate = backend.gate["attach"] = threading.Event()

    async def scenario() -> list[str]:
        order: list[str] = []

        async def mount(name: str, mount_id: str) -> None:
            await harness.service.mount("mem", name, mount_id)
            order.append(f"{name}/{mount_id}")

        slow = asyncio.ensure_future(mount("slow", "1"))
        slow_again = asyncio.ensure_future(mount("slow", "2"))
        await asyncio.sleep(0.05)
        del backend.gate["attach"]
        await mount("fast", "1")  # not blocked by the slow volume's lock
        assert order == ["fast/1"]
        gate.set()
        await asyncio.gather(slow, slow_again)
        return order

    assert harness.run(scenario()) == ["fast/1", "slow/1", "slow/2"]


# crash recovery -------------------------------------------------------------------------
def test_recovery_removes_half_created_volume(harness: Harness, backend: MemoryBackend) -> None:
    harness.create("done")
    gate = backend.gate["create"] = threading.Event()
    backend.fail["create"] = "crash"  # stands for the process dying mid-create
    backend.fail["remove"] = "still crashed"  # the cleanup dies too
    del backend.gate["create"]
    gate.set()
    with pytest.raises(BackendError):
        harness.create("half")
    assert [v.state for v in harness.store.load() if v.name == "half"] == [State.CREATING]
    again = harness.restart()
    try:
        assert again.names() == ["done"]
        assert [v.name for v in again.store.load()] == ["done"]
    finally:
        again.close()


def test_recovery_reattaches_counted_mounts_and_detaches_leaks(
    harness: Harness, backend: MemoryBackend
) -> None:
    harness.create("held")
    harness.create("leaked")
    harness.mount("held", "c1")
    backend.attached.clear()  # the host lost the attachment (reboot, crash)
    backend.attached.add("leaked")  # and something is attached that nobody holds
    again = harness.restart()
    try:
        assert backend.attached == {"held"}
        assert again.get("held").mount_ids == {"c1"}
        assert again.get("held").state == State.ATTACHED
        assert again.get("leaked").state == State.READY
    finally:
        again.close()


def test_recovery_finishes_interrupted_detach(harness: Harness, backend: MemoryBackend) -> None:
    harness.create("v")
    harness.mount("v", "c1")
    backend.fail["detach"] = "killed mid-detach"
    with pytest.raises(BackendError):
        harness.unmount("v", "c1")
    assert harness.get("v").state == State.DETACHING
    again = harness.restart()
    try:
        assert "v" not in backend.attached
        assert again.get("v").state == State.READY and again.get("v").mounts == 0
    finally:
        again.close()


def test_a_failed_detach_is_finished_by_a_repeated_unmount_or_the_next_pass(
    harness: Harness, backend: MemoryBackend
) -> None:
    # Found by the chaos run (ebs and digitalocean, seed 2, step 7): an API fault during the
    # last Unmount's detach left the disk attached here with no mount, and nothing retried.
    for finish in ("unmount", "discover"):
        harness.create(finish)
        harness.mount(finish, "c1")
        backend.fail["detach"] = "the API answered 503"
        with pytest.raises(BackendError, match="503"):
            harness.unmount(finish, "c1")
        assert harness.get(finish).state == State.DETACHING and finish in backend.attached
        if finish == "unmount":
            harness.unmount(finish, "c1")  # Docker's stop, repeated
        else:
            harness.run(harness.service.discover("mem"))  # the daemon's periodic pass
        assert finish not in backend.attached
        assert harness.get(finish).state == State.READY and not harness.get(finish).fault
    harness.unmount("unmount", "c1")  # nothing left to do: no further detach
    assert backend.calls["detach"] == 4


def test_drain_waits_for_operations_in_flight(harness: Harness, backend: MemoryBackend) -> None:
    harness.create("v")
    gate = backend.gate["attach"] = threading.Event()

    async def scenario() -> tuple[bool, bool, int]:
        mount = asyncio.ensure_future(harness.service.mount("mem", "v", "c"))
        await asyncio.sleep(0.05)
        timed_out = await harness.service.drain(0.1)
        asyncio.get_running_loop().call_later(0.05, gate.set)
        finished = await harness.service.drain(5)
        assert mount.done()
        return timed_out, finished, harness.get("v").mounts

    assert harness.run(scenario()) == (False, True, 1)
