"""Boot order: a Mount before the backend ever answered retries backend faults, a while."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext, VolumeRef
from orlop.core.boot import BootWait
from orlop.core.model import BackendError, InvalidOption
from orlop.ops import reachability
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend
from tests.support.names import unique

pytestmark = pytest.mark.unit


class LateBackend(MemoryBackend):
    """Attach fails with `error` until `down` attempts were made."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.down = 0
        self.error: Exception = BackendError("connect to 127.0.0.1:22: connection refused")

    def attach(self, volume: VolumeRef) -> str:
        self.calls["attach-attempt"] += 1
        if self.calls["attach-attempt"] <= self.down:
            raise self.error
        return super().attach(volume)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    driver = unique("boot")
    first = Harness(
        LateBackend(BackendContext(driver, "/nonexistent")), driver, str(tmp_path / "db")
    )
    first.create("v")
    first.close()
    reachability.forget(driver)  # as after a restart: the new daemon has heard nothing yet
    again = Harness(first.backend, driver, str(tmp_path / "db"))
    again.service.boot = BootWait(every=0.01)
    yield again
    again.close()
    reachability.forget(driver)


def backend(harness: Harness) -> Any:
    return harness.backend


def test_a_mount_before_any_answer_waits_for_the_backend(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orlop.core.boot")
    backend(harness).down = 5
    assert harness.mount("v").startswith("/memory/")
    assert backend(harness).calls["attach-attempt"] == 6
    messages = [r.getMessage() for r in caplog.records if r.name == "orlop.core.boot"]
    assert len(messages) == 2
    assert "has not answered since start" in messages[0] and "connection refused" in messages[0]
    assert "answered after 6 attempts" in messages[1]


def test_once_the_backend_answered_a_fault_fails_at_once(harness: Harness) -> None:
    backend(harness).down = 0
    harness.mount("v", "m1")
    backend(harness).down = 2
    backend(harness).calls["attach-attempt"] = 0
    with pytest.raises(BackendError):
        harness.mount("v", "m2")
    assert backend(harness).calls["attach-attempt"] == 1


def test_a_users_error_is_not_retried(harness: Harness) -> None:
    backend(harness).down = 3
    backend(harness).error = InvalidOption("no such share")
    with pytest.raises(InvalidOption):
        harness.mount("v")
    assert backend(harness).calls["attach-attempt"] == 1


def test_it_gives_up_within_its_limit(harness: Harness) -> None:
    harness.service.boot = BootWait(limit=0.1, every=0.02)
    backend(harness).down = 1000
    with pytest.raises(BackendError, match="connection refused"):
        harness.mount("v")
    assert 2 <= backend(harness).calls["attach-attempt"] <= 7
    assert harness.get("v").state.value == "ready"  # nothing half-made


def test_after_its_window_a_fault_fails_at_once(harness: Harness) -> None:
    harness.service.boot = BootWait(window=0)
    backend(harness).down = 3
    with pytest.raises(BackendError):
        harness.mount("v")
    assert backend(harness).calls["attach-attempt"] == 1
