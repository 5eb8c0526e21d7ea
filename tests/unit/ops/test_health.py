"""`orlop status`'s numbers from a VolumeService: backend reachability from its last call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.core.model import BackendError, InvalidOption
from orlop.ops import reachability
from orlop.ops.health import daemon_status, healthz
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend
from tests.support.names import unique

pytestmark = pytest.mark.unit


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    backend = MemoryBackend(BackendContext("mem", "/nonexistent"))
    harness = Harness(backend, unique("drv"), store_path=str(tmp_path / "orlop.db"))
    yield harness
    harness.close()


def status_of(harness: Harness) -> dict[str, object]:
    drivers = daemon_status(harness.service, "done", {harness.driver: True}, None)["drivers"]
    return dict(drivers[0])


def test_backend_fault_marks_it_unreachable_and_a_success_clears_it(harness: Harness) -> None:
    assert status_of(harness)["backend_reachable"] is None
    harness.backend.fail["create"] = "endpoint down"  # type: ignore[attr-defined]
    with pytest.raises(BackendError):
        harness.create("v")
    driver = status_of(harness)
    assert driver["backend_reachable"] is False and "endpoint down" in str(driver["backend_error"])
    full = daemon_status(harness.service, "done", {harness.driver: True}, None)
    assert full["healthy"] is False
    with pytest.raises(InvalidOption):  # a user's error says nothing of the backend
        harness.create("w", size="10X")
    assert status_of(harness)["backend_reachable"] is False
    harness.create("v")
    assert status_of(harness)["backend_reachable"] is True
    assert daemon_status(harness.service, "done", {harness.driver: True}, None)["healthy"] is True


def test_not_serving_or_failed_recovery_is_unhealthy(harness: Harness) -> None:
    service, driver = harness.service, harness.driver
    assert daemon_status(service, "done", {driver: False}, None)["healthy"] is False
    assert daemon_status(service, "failed", {driver: True}, None)["healthy"] is False
    running = daemon_status(harness.service, "running", {harness.driver: True}, "127.0.0.1:1")
    assert running["healthy"] is True and running["metrics"] == "127.0.0.1:1"


def test_recovery_fault_marks_the_driver_down_and_status_says_what_recovery_did(
    harness: Harness,
) -> None:
    harness.create("held")
    harness.mount("held")
    backend = MemoryBackend(BackendContext(harness.driver, "/nonexistent"))
    backend.volumes["held"] = {"files": {}}
    backend.fail["attach"] = "cluster unreachable"  # the re-attach at recovery fails
    again = harness.restart(backend)
    try:
        status = daemon_status(again.service, "done", {again.driver: True}, None)
        (driver,) = status["drivers"]
        assert driver["recovery"] == {"waiting": 0, "repairing": [], "failed": 1}
        assert driver["backend_reachable"] is False
        assert driver["backend_fault_source"] == "recovery"
        assert "cluster unreachable" in driver["backend_error"]
        assert driver["backend_since"].endswith("Z") and driver["faulted"] == ["held"]
        assert status["healthy"] is False and status["down"] == [again.driver]
        healthy, body = healthz(again.service, "done", {again.driver: True})
        assert not healthy
        assert body == {
            "status": "down",
            "recovery": "done",
            "drivers": {again.driver: True},
            "down": [again.driver],
        }
        again.mount("held", "m2")  # the backend answers again
        assert healthz(again.service, "done", {again.driver: True})[0] is True
    finally:
        again.close()
        reachability.forget(harness.driver)


def test_recovery_waiting_before_it_runs(tmp_path: Path) -> None:
    driver = unique("drv")
    first = Harness(
        MemoryBackend(BackendContext(driver, "/nonexistent")),
        driver,
        store_path=str(tmp_path / "orlop.db"),
    )
    first.create("a")
    first.create("b")
    first.close()
    second = Harness(first.backend, driver, store_path=str(tmp_path / "orlop.db"))
    try:
        (status,) = daemon_status(second.service, "running", {driver: True}, None)["drivers"]
        assert status["recovery"] == {"waiting": 2, "repairing": [], "failed": 0}
        second.run(second.service.recover())
        (status,) = daemon_status(second.service, "done", {driver: True}, None)["drivers"]
        assert status["recovery"] == {"waiting": 0, "repairing": [], "failed": 0}
    finally:
        second.close()
        reachability.forget(driver)
