"""kill -9 of the daemon around CSI calls; restarted, the orchestrator's retries finish the job
and nothing is lost or leaked (loopfile: a real image, loop device and mounts).

`test_kill_at_every_step` drives one volume through every CSI call twice (the second time to
read back what the first wrote) and dies at each named failpoint on the way (see `PLANS`):
each kill restarts the daemon armed with the next failpoint, the killed call is retried as
an orchestrator retries it, and at the end nothing is left: no mount, loop device, store row,
publication or cloud disk."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from orlop.core.failpoints import FAILPOINT_EXIT_STATUS
from orlop.host.mounts import is_mountpoint, mounts_under
from tests.integration.csi.client import (
    CsiClient,
    block_capability,
    capability,
    capacity,
    csi_socket,
    start_csi_daemon,
)
from tests.servers.ec2.server import namespace_volumes
from tests.support.block import cleanup, leftovers
from tests.support.daemon import OrlopDaemon, wait_for_socket
from tests.support.names import unique

pytest_plugins = ["tests.servers.ec2.fixtures"]

MiB = 1024 * 1024
GiB = 1024 * MiB


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


# The failpoints one lifecycle dies at, in order: (failpoint, the CSI call it kills, round).
# Each kill restarts the daemon armed with the next one, so the next must not lie on the
# path recovery takes after the kill before it (a detach after block.after_unmount would
# reach block.after_detach_device during the restart): those two are in different rounds.
Plan = list[tuple[str, str, int]]
PLANS: dict[str, Plan] = {
    "loopfile": [
        ("block.after_create", "CreateVolume", 1),
        ("block.after_attach_device", "NodeStageVolume", 1),
        ("block.before_format", "NodeStageVolume", 1),
        ("block.after_format", "NodeStageVolume", 1),
        ("block.after_mount", "NodeStageVolume", 1),
        ("csi.node_publish.after_hold", "NodePublishVolume", 1),
        ("csi.node_unpublish.after_unbind", "NodeUnpublishVolume", 1),
        ("csi.node_unstage.after_unbind", "NodeUnstageVolume", 1),
        ("block.after_unmount", "NodeUnstageVolume", 1),
        ("csi.node_stage.after_attach", "NodeStageVolume", 2),
        ("block.after_detach_device", "NodeUnstageVolume", 2),
        ("block.before_remove", "DeleteVolume", 2),
    ],
    "loopfile-raw": [
        ("block.after_attach_device", "NodeStageVolume", 1),
        ("csi.node_stage.after_attach", "NodeStageVolume", 1),
        ("csi.node_publish.after_hold", "NodePublishVolume", 1),
        ("csi.node_unpublish.after_unbind", "NodeUnpublishVolume", 1),
        ("csi.node_unstage.after_unbind", "NodeUnstageVolume", 1),
        ("block.after_unmount", "NodeUnstageVolume", 1),
        ("block.before_remove", "DeleteVolume", 2),
    ],
    "ebs": [  # a cloud disk is released (unmounted, detached) at its last NodeUnpublish
        ("csi.controller_publish.after_claim", "ControllerPublishVolume", 1),
        ("block.after_attach_device", "NodeStageVolume", 1),
        ("csi.controller_unpublish.after_release", "ControllerUnpublishVolume", 1),
        # Not earlier: the restart after the kill in NodeStage detaches (recovery) and
        # would die there.
        ("block.after_unmount", "NodeUnpublishVolume", 2),
    ],
}


class Orchestrator:
    """Calls as an orchestrator makes them: a call the daemon died in is retried once the
    daemon is back (restarted armed with the plan's next failpoint)."""

    def __init__(self, daemon: OrlopDaemon, plan: Plan) -> None:
        self.daemon = daemon
        self.driver = next(iter(daemon.drivers))
        self.plan = plan
        self.round = 1
        self.killed: list[tuple[str, str, int]] = []
        self.client = CsiClient(csi_socket(daemon, self.driver))

    def call(self, method: str, **fields: Any) -> Any:
        while True:  # a retried call may die at the plan's next failpoint
            try:
                return self.client.call(method, **fields)
            except grpc.RpcError as error:
                try:
                    status = self.daemon.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    raise error from None  # alive: a real error of the call, not a kill
            assert status == FAILPOINT_EXIT_STATUS, self.daemon.log()[-2000:]
            self.restart(method)

    def restart(self, method: str) -> None:
        armed = self.daemon.env.pop("ORLOP_FAILPOINTS")
        self.killed.append((armed, method, self.round))
        following = self.plan[len(self.killed) :]
        if following:
            self.daemon.env["ORLOP_FAILPOINTS"] = following[0][0]
        self.client.close()
        self.daemon.start()
        wait_for_socket(csi_socket(self.daemon, self.driver), process=self.daemon.process)
        self.client = CsiClient(csi_socket(self.daemon, self.driver))


def write_data(target: Path, raw: bool, data: bytes) -> None:
    path = target if raw else target / "rows"
    with open(path, "r+b" if raw else "wb", buffering=0) as file:
        file.write(data)
        os.fsync(file.fileno())


def read_data(target: Path, raw: bool, length: int) -> bytes:
    with open(target if raw else target / "rows", "rb", buffering=0) as file:
        return file.read(length)


def lifecycle(run: Orchestrator, cap: Any, size: int, tmp_path: Path, controller: bool) -> str:
    """One volume through every call, twice; returns its name."""
    name = unique("life")
    raw = cap.HasField("block")
    data = os.urandom(MiB)
    volume = run.call(
        "CreateVolume", name=name, capacity_range=capacity(size), volume_capabilities=[cap]
    ).volume
    node = run.call("NodeGetInfo").node_id
    for run.round in (1, 2):
        staging, target = tmp_path / f"staging-{run.round}", tmp_path / f"pod-{run.round}" / "t"
        staging.mkdir()
        if controller:
            run.call(
                "ControllerPublishVolume",
                volume_id=name,
                node_id=node,
                volume_capability=cap,
                volume_context=dict(volume.volume_context),
            )
        stage = {
            "volume_id": name,
            "staging_target_path": str(staging),
            "volume_capability": cap,
            "volume_context": dict(volume.volume_context),
        }
        run.call("NodeStageVolume", **stage)
        run.call("NodePublishVolume", **stage, target_path=str(target))
        if run.round == 1:
            write_data(target, raw, data)
        else:  # written before the kills since: still there
            assert read_data(target, raw, MiB) == data
        run.call("NodeUnpublishVolume", volume_id=name, target_path=str(target))
        assert not target.exists()
        run.call("NodeUnstageVolume", volume_id=name, staging_target_path=str(staging))
        assert not is_mountpoint(str(staging))
        if controller:
            run.call("ControllerUnpublishVolume", volume_id=name, node_id=node)
    run.call("DeleteVolume", volume_id=name)
    return name


def stored_rows(daemon: OrlopDaemon) -> list[tuple[str]]:
    """Every volume and mount row of the daemon's store."""
    with contextlib.closing(sqlite3.connect(daemon.state_dir / "orlop.db")) as store:
        rows = store.execute("SELECT name FROM volumes UNION ALL SELECT name FROM mounts")
        return list(rows.fetchall())


@pytest.fixture(params=list(PLANS))
def variant(request: pytest.FixtureRequest) -> Iterator[tuple[str, OrlopDaemon]]:
    plan = PLANS[request.param]
    if request.param == "ebs":
        host = request.getfixturevalue("ec2_host")(style="nvme")
        config: dict[str, Any] = host.driver_config(fs="ext4")
    else:
        config = {"backend": "loopfile", "options": {"fs": "ext4"}}
    driver = unique("csi-kill")
    started = start_csi_daemon({driver: config}, env={"ORLOP_FAILPOINTS": plan[0][0]})
    try:
        yield request.param, started
    finally:
        started.stop()
        cleanup(str(started.state_dir / "drivers" / driver))
        started.destroy()


def test_kill_at_every_step(
    variant: tuple[str, OrlopDaemon], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kind, daemon = variant
    plan = PLANS[kind]
    run = Orchestrator(daemon, plan)
    cap = block_capability() if kind.endswith("-raw") else capability()
    size = GiB if kind == "ebs" else 64 * MiB
    name = lifecycle(run, cap, size, tmp_path, controller=kind == "ebs")
    assert run.killed == plan  # every failpoint was reached, in the call it belongs to
    assert run.client.call("ListVolumes").entries == []
    root = str(daemon.state_dir / "drivers" / run.driver)
    assert leftovers(root) == {"mounts": [], "loop_devices": []}
    assert mounts_under(str(tmp_path)) == []
    # A DeleteVolume retried after the kill in it may answer before the restarted daemon's
    # recovery has finished that removal (the volume is no longer listed): wait for it.
    images = Path(root) / "images"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (stored_rows(daemon) or any(images.glob("*"))):
        time.sleep(0.05)
    assert stored_rows(daemon) == [] and list(images.glob("*")) == []
    claims = daemon.state_dir / "csi" / f"{run.driver}.publications.json"
    assert not claims.exists() or json.loads(claims.read_text()) == {}
    if kind == "ebs":  # the disk itself is gone from the cloud
        moto, namespace = request.getfixturevalue("moto"), request.getfixturevalue("namespace")
        disks = namespace_volumes(moto.client(), namespace)
        assert [d["VolumeId"] for d in disks if d["State"] != "deleted"] == [], name
    run.client.close()
