"""Get answers from a cached body: every change a user can see must still show at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext
from orlop.core.model import Usage
from orlop.frontends.docker.plugin import DockerPlugin
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(MemoryBackend(BackendContext(driver="mem", state_dir=str(tmp_path))), "mem")
    try:
        yield h
    finally:
        h.close()


def _get(plugin: DockerPlugin, name: str) -> dict[str, Any]:
    status, body = plugin.routes()[b"/VolumeDriver.Get"](json.dumps({"Name": name}).encode())
    assert status == 200
    answer = json.loads(body)
    assert answer["Err"] == "", answer
    status_field: dict[str, Any] = answer["Volume"]["Status"]
    return status_field


def test_get_shows_mounts_state_and_faults_as_they_change(harness: Harness) -> None:
    plugin = DockerPlugin(harness.service, "mem")
    harness.create("v1")
    assert _get(plugin, "v1")["mounts"] == 0
    harness.mount("v1", "a")
    harness.mount("v1", "b")
    assert (_get(plugin, "v1")["mounts"], _get(plugin, "v1")["state"]) == (2, "attached")
    harness.unmount("v1", "a")
    harness.unmount("v1", "b")
    assert (_get(plugin, "v1")["mounts"], _get(plugin, "v1")["state"]) == (0, "ready")
    # Changed in place, without a new generation (as refresh_usage and detach faults do).
    volume = harness.get("v1")
    volume.fault = "usage did not answer within 10s"
    assert _get(plugin, "v1")["fault"] == "usage did not answer within 10s"
    volume.usage = Usage(used=4096)
    assert _get(plugin, "v1")["usage"]["used"] == 4096


def test_get_of_a_recreated_volume_is_not_the_old_one(harness: Harness) -> None:
    plugin = DockerPlugin(harness.service, "mem")
    harness.create("v1")
    harness.mount("v1", "a")
    assert _get(plugin, "v1")["mounts"] == 1
    harness.unmount("v1", "a")
    harness.remove("v1")
    _status, body = plugin.routes()[b"/VolumeDriver.Get"](b'{"Name":"v1"}')
    assert "not found" in json.loads(body)["Err"]
    harness.create("v1")
    assert _get(plugin, "v1")["mounts"] == 0
