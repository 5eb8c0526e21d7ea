"""Nothing hangs the daemon: a backend call that hangs holds only its own volume. Get, List,
Path and other volumes answer within 100 ms meanwhile; the caller gets a clear error at its
timeout; a retried Mount or Create joins the operation in flight instead of starting another."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext, VolumeRef
from orlop.core.model import BackendError, State
from orlop.frontends.docker import plugin as docker_plugin
from orlop.frontends.docker.plugin import DockerPlugin
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend

FAST = 0.1  # seconds: what "answers" means for the volumes and calls a hang must not hold


class HangingBackend(MemoryBackend):
    """Hangs `attach`/`create`/`detach` of the volumes named in `hung` until `release` is set."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.hung: set[str] = set()
        self.release = threading.Event()
        self.per_volume: dict[tuple[str, str], int] = {}

    def _hang(self, method: str, volume: VolumeRef) -> None:
        key = (method, volume.name)
        self.per_volume[key] = self.per_volume.get(key, 0) + 1
        if volume.name in self.hung:
            self.release.wait(10)

    def attach(self, volume: VolumeRef) -> str:
        self._hang("attach", volume)
        return super().attach(volume)

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        self._hang("create", volume)
        return super().create(volume)

    def detach(self, volume: VolumeRef) -> None:
        self._hang("detach", volume)
        super().detach(volume)


@pytest.fixture
def backend() -> Iterator[HangingBackend]:
    backend = HangingBackend(BackendContext("mem", "/nonexistent"))
    yield backend
    backend.release.set()


@pytest.fixture
def harness(backend: HangingBackend, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(backend, "mem", store_path=str(tmp_path / "orlop.db"))
    yield harness
    harness.backend.release.set()  # type: ignore[attr-defined]
    harness.close()


async def wait_for_call(backend: HangingBackend, method: str, name: str) -> None:
    deadline = time.monotonic() + 5
    while backend.per_volume.get((method, name), 0) == 0:
        assert time.monotonic() < deadline, f"{method} of {name} never started"
        await asyncio.sleep(0.005)


async def within(seconds: float, coroutine: Any) -> Any:
    start = time.monotonic()
    result = await asyncio.wait_for(coroutine, 5)
    took = time.monotonic() - start
    assert took < seconds, f"took {took:.3f}s, more than {seconds}s"
    return result


def test_hung_mount_holds_only_its_volume_and_a_retry_joins_it(
    harness: Harness, backend: HangingBackend
) -> None:
    service = harness.service
    for name in ("v", "w"):
        harness.create(name)
    backend.hung.add("v")

    async def scenario() -> None:
        first = asyncio.ensure_future(service.mount("mem", "v", "c1", timeout=0.3))
        await wait_for_call(backend, "attach", "v")
        start = time.monotonic()
        assert service.get("mem", "v").state == State.ATTACHING
        assert {v.name for v in service.list("mem")} == {"v", "w"}
        assert service.get("mem", "v").mountpoint == backend.mountpoint(VolumeRef("v", {}, {}))
        assert time.monotonic() - start < FAST
        # Another volume mounts, and a new one is made, while v's attach hangs.
        assert await within(FAST, service.mount("mem", "w", "c9", timeout=5)) == "/memory/mem/w"
        await within(FAST, service.create("mem", "x", {}, timeout=5))
        with pytest.raises(BackendError, match=r"mounting volume v did not finish within 0\.3s"):
            await first
        # Docker asks again: the same Mount joins the attach in flight, never a second one.
        retry = asyncio.ensure_future(service.mount("mem", "v", "c1", timeout=5))
        await asyncio.sleep(0.05)
        assert not retry.done() and backend.per_volume[("attach", "v")] == 1
        backend.release.set()
        assert await retry == "/memory/mem/v"

    harness.run(scenario())
    assert backend.per_volume[("attach", "v")] == 1
    volume = harness.get("v")
    assert (volume.state, volume.mount_ids, volume.fault) == (State.ATTACHED, {"c1"}, "")


def test_timed_out_mount_is_recorded_when_it_finishes(
    harness: Harness, backend: HangingBackend
) -> None:
    """No caller is left, yet the attach that went on is recorded: an Unmount finds it."""
    harness.create("v")
    backend.hung.add("v")

    async def scenario() -> None:
        with pytest.raises(BackendError, match="did not finish within"):
            await harness.service.mount("mem", "v", "c1", timeout=0.1)
        backend.release.set()
        await harness.service.unmount("mem", "v", "c1")  # waits for the lock: the attach

    harness.run(scenario())
    assert backend.calls["attach"] == 1 and backend.calls["detach"] == 1
    assert harness.get("v").state == State.READY and "v" not in backend.attached


def test_retried_create_joins_the_create_in_flight(
    harness: Harness, backend: HangingBackend
) -> None:
    backend.hung.add("v")
    service = harness.service

    async def scenario() -> None:
        with pytest.raises(BackendError, match=r"creating volume v did not finish within"):
            await service.create("mem", "v", {"size": "1G"}, timeout=0.1)
        assert service.list("mem") == []  # not there until it is made
        retry = asyncio.ensure_future(service.create("mem", "v", {"size": "1G"}, timeout=5))
        await asyncio.sleep(0.05)
        assert not retry.done()
        backend.release.set()
        volume = await retry
        assert volume.state == State.READY

    harness.run(scenario())
    assert backend.calls["create"] == 1
    assert harness.names() == ["v"]


def test_a_hung_measurement_is_not_asked_again_until_it_returns(
    harness: Harness, backend: HangingBackend
) -> None:
    """Each refresh of a hung filesystem's usage would strand one more worker thread, until
    none is left for any volume."""
    harness.create("v")
    gate = backend.gate["usage"] = threading.Event()
    before = backend.calls["usage"]

    async def scenario() -> None:
        for _ in range(5):
            await within(0.5, harness.service.refresh_usage("mem", "v", timeout=0.05))
        assert backend.calls["usage"] == before + 1
        del backend.gate["usage"]
        gate.set()
        await asyncio.sleep(0.05)
        await harness.service.refresh_usage("mem", "v", timeout=1)
        assert backend.calls["usage"] == before + 2

    harness.run(scenario())


def test_docker_mount_answers_a_clear_error_before_docker_gives_up(
    harness: Harness, backend: HangingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_plugin, "OPERATION_TIMEOUT", 0.2)
    plugin = DockerPlugin(harness.service, "mem")
    routes = plugin.routes()
    harness.create("v")
    backend.hung.add("v")
    request = json.dumps({"Name": "v", "ID": "c1"}).encode()

    async def call(endpoint: bytes, body: bytes) -> dict[str, Any]:
        result = routes[endpoint](body)
        status, answer = result if isinstance(result, tuple) else await result
        assert status == 200
        parsed: dict[str, Any] = json.loads(answer)
        return parsed

    async def scenario() -> None:
        first = asyncio.ensure_future(call(b"/VolumeDriver.Mount", request))
        await wait_for_call(backend, "attach", "v")
        get = await within(FAST, call(b"/VolumeDriver.Get", json.dumps({"Name": "v"}).encode()))
        assert get["Volume"]["Status"]["state"] == "attaching"
        answer = await first
        assert "mounting volume v did not finish within 0.2s" in answer["Err"]
        retry = asyncio.ensure_future(call(b"/VolumeDriver.Mount", request))
        await asyncio.sleep(0.05)
        backend.release.set()
        assert (await retry) == {"Mountpoint": "/memory/mem/v", "Err": ""}

    harness.run(scenario())
    assert backend.calls["attach"] == 1


def test_hung_unmount_ends_at_its_timeout_and_a_retry_joins_it(
    harness: Harness, backend: HangingBackend
) -> None:
    """A detach stuck on a stalled disk (umount in the kernel): Docker's Unmount gets a clear
    error; its retry waits for the same detach, and the volume ends detached."""
    harness.create("v")
    harness.mount("v", "c1")
    backend.hung.add("v")

    async def scenario() -> None:
        with pytest.raises(BackendError, match=r"unmounting volume v did not finish within"):
            await harness.service.unmount("mem", "v", "c1", timeout=0.1)
        assert await within(FAST, asyncio.sleep(0, harness.get("v").state)) == State.DETACHING
        retry = asyncio.ensure_future(harness.service.unmount("mem", "v", "c1", timeout=5))
        await asyncio.sleep(0.05)
        assert not retry.done()
        backend.release.set()
        await retry

    harness.run(scenario())
    assert backend.calls["detach"] == 1
    assert harness.get("v").state == State.READY and "v" not in backend.attached
