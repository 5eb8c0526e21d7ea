"""EBS volume lifecycle latency: Orlop's EBS driver vs its peers, measured in the same run.

    .venv/bin/python bench/bench_ebs.py [--rounds 5] [--claim-settle 1.0]

Runs as root (loop devices, mounts). EC2 is moto on 127.0.0.1 and the disks are loop
devices presented by the simulated node, so the figures are Orlop's own overhead (API
round trips, the attach claim, polling, format and mount), not AWS's attach latency, which
is seconds and dominates on a real instance. Peers:

* `loopfile`: the same block layer over a local image file — the floor for format+mount.
* `bare API`: CreateVolume / AttachVolume / DetachVolume / DeleteVolume straight through
  boto3 with the same waits for state and device — what a driver with no claim, no
  preemption check and no adoption pays.

No target is asserted; the table shows where the time goes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orlop.backends.base import BackendContext
from orlop.backends.block.cloud.ebs import EbsBackend
from orlop.backends.block.cloud.ebs.devices import nvme_link
from orlop.backends.block.loopfile import LoopFileBackend
from tests.support.ec2 import (
    CREDENTIALS,
    REGION,
    ZONE,
    LoopPool,
    MotoServer,
    SimulatedNode,
    run_instance,
    unset_ca_bundles,
)
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.processes import unmount_all_under

STEPS = ("create", "first mount (format)", "unmount", "mount again", "unmount again", "remove")


def lifecycle(harness: Harness, name: str, times: dict[str, list[float]]) -> None:
    def timed(step: str, action: Callable[[], Any]) -> None:
        start = time.perf_counter()
        action()
        times.setdefault(step, []).append(time.perf_counter() - start)

    timed("create", lambda: harness.create(name, size="1G"))
    timed("first mount (format)", lambda: harness.mount(name, "m1"))
    timed("unmount", lambda: harness.unmount(name, "m1"))
    timed("mount again", lambda: harness.mount(name, "m2"))
    timed("unmount again", lambda: harness.unmount(name, "m2"))
    timed("remove", lambda: harness.remove(name))


def bare_api(client: Any, node: SimulatedNode, times: dict[str, list[float]]) -> None:
    def wait(check: Callable[[], bool]) -> None:
        pause = 0.05
        while not check():
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def state(volume_id: str) -> dict[str, Any]:
        return dict(client.describe_volumes(VolumeIds=[volume_id])["Volumes"][0])

    start = time.perf_counter()
    volume_id = client.create_volume(Size=1, AvailabilityZone=ZONE, VolumeType="gp3")["VolumeId"]
    wait(lambda: state(volume_id)["State"] == "available")
    times.setdefault("create", []).append(time.perf_counter() - start)
    link = Path(nvme_link(str(node.by_id_dir), volume_id))
    for attach_step, detach_step in (
        ("first mount (format)", "unmount"),
        ("mount again", "unmount again"),
    ):
        start = time.perf_counter()
        client.attach_volume(VolumeId=volume_id, InstanceId=node.instance_id, Device="/dev/xvdf")
        wait(lambda: any(a["State"] == "attached" for a in state(volume_id)["Attachments"]))
        wait(link.exists)
        times.setdefault(attach_step, []).append(time.perf_counter() - start)
        start = time.perf_counter()
        client.detach_volume(VolumeId=volume_id, InstanceId=node.instance_id)
        wait(lambda: not state(volume_id)["Attachments"])
        times.setdefault(detach_step, []).append(time.perf_counter() - start)
    start = time.perf_counter()
    client.delete_volume(VolumeId=volume_id)
    times.setdefault("remove", []).append(time.perf_counter() - start)


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:7.0f} / {p95 * 1000:6.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--claim-settle", type=float, default=1.0, help="EBS claim_settle (s)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_ebs needs root (loop devices and mounts)")
    unset_ca_bundles()
    moto, pool = MotoServer().start(), LoopPool()
    work = Path(tempfile.mkdtemp(prefix="orlop-bench-ebs-"))
    node: SimulatedNode | None = None
    try:
        client = moto.client()
        instance = run_instance(client)
        node = SimulatedNode(moto.client(), instance, pool, work / "node")
        node.start()
        settings = {
            **CREDENTIALS,
            "region": REGION,
            "endpoint_url": moto.url,
            "instance_id": instance,
            "availability_zone": ZONE,
            "namespace": unique("bench"),
            "claim_settle": args.claim_settle,
            **node.settings(),
        }
        ebs = Harness(
            EbsBackend(BackendContext("ebs", str(work / "ebs"), settings=settings)), "ebs"
        )
        loopfile = Harness(LoopFileBackend(BackendContext("loop", str(work / "loop"))), "loop")
        results: dict[str, dict[str, list[float]]] = {"ebs": {}, "loopfile": {}, "bare API": {}}
        for round_ in range(args.rounds):  # interleaved, so drift hits every column alike
            lifecycle(ebs, f"bench-ebs-{round_}", results["ebs"])
            lifecycle(loopfile, f"bench-loop-{round_}", results["loopfile"])
            bare_api(client, node, results["bare API"])
        ebs.close()
        loopfile.close()
    finally:
        if node is not None:
            node.stop()
        pool.destroy()
        moto.stop()
        unmount_all_under(str(work))
        shutil.rmtree(work, ignore_errors=True)
    print(f"EBS lifecycle, {args.rounds} rounds, 1 GiB ext4, claim_settle={args.claim_settle:g}s")
    print("milliseconds, p50 / p95 (bare API: no filesystem, no claim, no checks)\n")
    header = f"{'step':<22}" + "".join(f"{name:>18}" for name in results)
    print(header)
    print("-" * len(header))
    for step in STEPS:
        print(f"{step:<22}" + "".join(f"{summary(results[n][step]):>18}" for n in results))


if __name__ == "__main__":
    main()
