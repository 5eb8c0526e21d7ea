"""kill -9 of the daemon around CSI calls; restarted, the orchestrator's retries finish the job
and nothing is lost or leaked (loopfile: a real image, loop device and mounts)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from orlop.host.mounts import is_mountpoint
from tests.integration.csi.client import (
    CsiClient,
    capability,
    capacity,
    csi_socket,
    start_csi_daemon,
)
from tests.support.block import cleanup, leftovers
from tests.support.daemon import OrlopDaemon, wait_for_socket
from tests.support.names import unique

MiB = 1024 * 1024


@pytest.fixture
def daemon() -> Iterator[OrlopDaemon]:
    driver = unique("csi-crash")
    started = start_csi_daemon({driver: {"backend": "loopfile", "options": {"fs": "ext4"}}})
    try:
        yield started
    finally:
        started.stop()
        cleanup(str(started.state_dir / "drivers" / driver))
        started.destroy()


def restart(daemon: OrlopDaemon, client: CsiClient) -> CsiClient:
    daemon.kill()
    client.close()
    daemon.start()
    driver = next(iter(daemon.drivers))
    wait_for_socket(csi_socket(daemon, driver), process=daemon.process)
    return CsiClient(csi_socket(daemon, driver))


def test_kill_during_create_then_retry(daemon: OrlopDaemon) -> None:
    driver = next(iter(daemon.drivers))
    client = CsiClient(csi_socket(daemon, driver))
    name = unique("crash")
    request = {
        "name": name,
        "capacity_range": capacity(64 * MiB),
        "volume_capabilities": [capability()],
    }

    def create_and_forget() -> None:
        with contextlib.suppress(grpc.RpcError):
            client.call("CreateVolume", **request)

    caller = threading.Thread(target=create_and_forget)
    caller.start()
    images = daemon.state_dir / "drivers" / driver / "images"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (images.exists() and any(images.iterdir())):
        time.sleep(0.001)
    client = restart(daemon, client)  # the image exists: the create is under way
    caller.join(timeout=30)
    made = client.call("CreateVolume", **request).volume  # the orchestrator retries
    assert made.volume_id == name and made.capacity_bytes == 64 * MiB
    assert [e.volume.volume_id for e in client.call("ListVolumes").entries] == [name]
    client.call("DeleteVolume", volume_id=name)
    assert not images.exists() or list(images.iterdir()) == []
    client.close()


def test_kill_after_stage_and_publish(daemon: OrlopDaemon, tmp_path: Path) -> None:
    driver = next(iter(daemon.drivers))
    client = CsiClient(csi_socket(daemon, driver))
    name = unique("crash")
    client.call(
        "CreateVolume",
        name=name,
        capacity_range=capacity(64 * MiB),
        volume_capabilities=[capability()],
    )
    staging, target = tmp_path / "staging", tmp_path / "target"
    staging.mkdir()
    stage = {
        "volume_id": name,
        "staging_target_path": str(staging),
        "volume_capability": capability(),
    }
    publish = {**stage, "target_path": str(target)}
    client.call("NodeStageVolume", **stage)
    client = restart(daemon, client)
    client.call("NodeStageVolume", **stage)  # retried after the crash: idempotent
    client.call("NodePublishVolume", **publish)
    (target / "row").write_text("acknowledged")
    client = restart(daemon, client)
    client.call("NodePublishVolume", **publish)  # retried: idempotent, the data is there
    assert (target / "row").read_text() == "acknowledged"
    code, _ = client.code("DeleteVolume", volume_id=name)
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # still staged after the restarts
    client.call("NodeUnpublishVolume", volume_id=name, target_path=str(target))
    client.call("NodeUnstageVolume", volume_id=name, staging_target_path=str(staging))
    assert not is_mountpoint(str(staging))
    root = str(daemon.state_dir / "drivers" / driver)
    assert leftovers(root) == {"mounts": [], "loop_devices": []}
    client.call("DeleteVolume", volume_id=name)
    client.close()
