"""The short chaos run of CI: 15 random steps per provider (Cinder, whose real server is slow
to start and to move: 8), the first arming API faults, and 20 for the share kind (see
docs/chaos.md); the long one is `scripts/chaos --provider P --steps 1000 --seed S`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from orlop.host.run import run
from tests.chaos import hostfaults
from tests.chaos.hosts import SimHost
from tests.chaos.share import ShareSimulation
from tests.chaos.sim import Simulation
from tests.chaos.worlds import PROVIDERS, open_world
from tests.support.processes import unmount_all_under

pytestmark = pytest.mark.integration

STEPS = 15
SHORTER = {"cinder": 8}
SEED = 20261207


# A defect the run met once (seed 20261207, step 14; timing-dependent), not fixed yet: on GCE
# a restarted Orlop's recovery re-attached the volume for a mount ID Docker still owed an
# Unmount for, under API faults (the attach failed with a 503 after an earlier attempt's answer
# may have been lost); the owed Unmount then succeeded, yet the disk stayed attached to that
# host with nobody using it ("nobody uses chaos-data, yet the cloud shows it on [host]").
# Likely path: the detach saw no attachment while the attach operation was still pending on
# the server. Non-strict: most runs pass.
GCE_PENDING_ATTACH = pytest.mark.xfail(
    reason="a detach during a pending attach operation (lost answer) leaves the disk attached",
    strict=False,
)
KINDS = [pytest.param(p, marks=GCE_PENDING_ATTACH) if p == "gce" else p for p in PROVIDERS]


@pytest.mark.parametrize("provider", KINDS)
def test_random_moves_and_faults_break_no_invariant(provider: str) -> None:
    steps = SHORTER.get(provider, STEPS)
    report = Simulation(provider, seed=SEED, steps=steps, hosts=3, faults_first=True).run()
    assert report.steps == steps and report.lost == 0 and report.leaks == []
    assert report.acked > 0, "the workload never wrote"
    assert report.moves["start"] + report.moves["move"] + report.moves["failover"] > 0
    assert sum(report.faults_met.values()) > 0, "no API fault was met"


def test_share_writers_keep_every_acknowledged_record() -> None:
    report = ShareSimulation(seed=SEED, steps=20, hosts=3).run()
    assert report.steps == 20 and report.lost == 0 and report.leaks == []
    assert report.acked > 0, "no writer ever wrote"
    assert report.moves["start"] > 1


def test_a_full_state_disk_refuses_new_work_clearly_and_loses_nothing(tmp_path: Path) -> None:
    """The 'full' step's expectations, made to happen: Create and Mount on a host whose state
    disk is full are refused with an error saying so, nothing is half-made in the cloud, a
    mounted volume keeps its data and answers Get, and the host works again with space."""
    with contextlib.ExitStack() as stack:
        world = open_world("digitalocean", stack, tmp_path)
        home = tmp_path / "host0"
        (home / "orlop").mkdir(parents=True)
        host = SimHost(0, world.host(home), world.kind, home / "orlop")
        stack.callback(unmount_all_under, str(tmp_path))
        stack.callback(host.terminate)
        hostfaults.mount_state_disk(host)
        host.start()
        assert not host.call("Create", Name="kept", Opts=world.create_options).get("Err")
        path = host.call("Mount", Name="kept", ID="m1")["Mountpoint"]
        Path(path, "data").write_text("before the disk filled")
        hostfaults.fill(host)
        refused = [
            host.call("Create", Name="new", Opts=world.create_options).get("Err", ""),
            host.call("Mount", Name="kept", ID="m2").get("Err", ""),
        ]
        made_then = [d.id for d in world.disks("new")]
        answer = host.call("Get", Name="kept")
        hostfaults.empty(host)
        assert all(hostfaults.clear_full_error(error) for error in refused), refused
        assert made_then == [], "a refused Create left a disk"
        assert not answer.get("Err") and Path(path, "data").read_text() == "before the disk filled"
        assert not host.call("Create", Name="new", Opts=world.create_options).get("Err")
        for name, mount_id in (("kept", "m1"),):
            assert not host.call("Unmount", Name=name, ID=mount_id).get("Err")
        for name in ("kept", "new"):
            assert not host.call("Remove", Name=name).get("Err")
        host.terminate()
        run(["umount", str(host.daemon.state_dir)], timeout=60)
