"""CSI frontend latency: a cloud disk's CreateVolume → ControllerPublish → NodeStage →
NodePublish through a real gRPC channel, against the bare provider calls on the same server.

    .venv/bin/python bench/bench_csi.py [--rounds 5] [--publishes 50]

Root (loop devices, mounts). EBS runs on moto behind the refusing proxy, its disks shown as
real loop devices (as bench_cloud.py): the figures are Orlop's overhead, not a cloud's attach
latency. `orlop serve` runs as its own process with a csi: section; the client is grpcio.
Columns: `csi` (each call), `bare` (the provider's create, attach + wait for the device, mkfs,
mount; bench_cloud's `bare`). Then NodePublish of a staged volume (bind mount into a new
target) p50/p95, for EBS and loopfile. Targets (issue 18): csi total ≤ bare + 100 ms;
NodePublish p50 ≤ 5 ms. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_cloud import bare, open_testbed, summary
from tests.integration.csi.client import (
    CsiClient,
    capability,
    capacity,
    csi_socket,
    start_csi_daemon,
)
from tests.support.names import unique
from tests.support.processes import unmount_all_under

GiB = 1024**3
CSI_STEPS = ("CreateVolume", "ControllerPublishVolume", "NodeStageVolume", "NodePublishVolume")


def timed(times: dict[str, list[float]], step: str, call: Any) -> Any:
    started = time.perf_counter()
    result = call()
    times.setdefault(step, []).append(time.perf_counter() - started)
    return result


def csi_round(client: CsiClient, node: str, work: Path, times: dict[str, list[float]]) -> None:
    name = unique("bench")
    volume = timed(
        times,
        "CreateVolume",
        lambda: (
            client.call(
                "CreateVolume",
                name=name,
                capacity_range=capacity(GiB),
                volume_capabilities=[capability()],
            ).volume
        ),
    )
    timed(
        times,
        "ControllerPublishVolume",
        lambda: client.call(
            "ControllerPublishVolume",
            volume_id=name,
            node_id=node,
            volume_capability=capability(),
        ),
    )
    staging, target = work / f"{name}-staging", work / f"{name}-target"
    staging.mkdir(parents=True)
    common = {"volume_id": name, "volume_capability": capability()}
    timed(
        times,
        "NodeStageVolume",
        lambda: client.call(
            "NodeStageVolume",
            staging_target_path=str(staging),
            volume_context=dict(volume.volume_context),
            **common,
        ),
    )
    timed(
        times,
        "NodePublishVolume",
        lambda: client.call(
            "NodePublishVolume",
            staging_target_path=str(staging),
            target_path=str(target),
            **common,
        ),
    )
    client.call("NodeUnpublishVolume", volume_id=name, target_path=str(target))
    client.call("NodeUnstageVolume", volume_id=name, staging_target_path=str(staging))
    client.call("ControllerUnpublishVolume", volume_id=name, node_id=node)
    client.call("DeleteVolume", volume_id=name)


def publishes(client: CsiClient, work: Path, count: int, size: int) -> list[float]:
    """NodePublish of one staged volume into `count` new targets (each unpublished after)."""
    name = unique("pub")
    client.call(
        "CreateVolume",
        name=name,
        capacity_range=capacity(size),
        volume_capabilities=[capability()],
    )
    staging = work / f"{name}-staging"
    staging.mkdir(parents=True)
    client.call(
        "NodeStageVolume",
        volume_id=name,
        staging_target_path=str(staging),
        volume_capability=capability(),
    )
    # One target stays published throughout: the last NodeUnpublish of a cloud disk
    # releases it (unmount + detach), and the next NodePublish would stage it again.
    pinned = str(work / f"{name}-pinned")
    client.call(
        "NodePublishVolume",
        volume_id=name,
        staging_target_path=str(staging),
        target_path=pinned,
        volume_capability=capability(),
    )
    samples = []
    for index in range(count):
        target = str(work / f"{name}-t{index}")
        started = time.perf_counter()
        client.call(
            "NodePublishVolume",
            volume_id=name,
            staging_target_path=str(staging),
            target_path=target,
            volume_capability=capability(),
        )
        samples.append(time.perf_counter() - started)
        client.call("NodeUnpublishVolume", volume_id=name, target_path=target)
    client.call("NodeUnpublishVolume", volume_id=name, target_path=pinned)
    client.call("NodeUnstageVolume", volume_id=name, staging_target_path=str(staging))
    client.call("DeleteVolume", volume_id=name)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--publishes", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_csi needs root (loop devices and mounts)")
    work = Path(tempfile.mkdtemp(prefix="orlop-bench-csi-"))
    csi_times: dict[str, list[float]] = {}
    bare_times: dict[str, list[float]] = {}
    publish: dict[str, list[float]] = {}
    try:
        with contextlib.ExitStack() as stack:
            testbed = open_testbed("ebs", stack, work / "ebs")
            host = testbed.host()
            ebs = unique("ebs")
            daemon = start_csi_daemon({ebs: host.driver_config(fs="ext4")})
            stack.callback(daemon.destroy)
            client = CsiClient(csi_socket(daemon, ebs))
            stack.callback(client.close)
            loop_daemon = start_csi_daemon(
                {"bench-loop": {"backend": "loopfile", "options": {"fs": "ext4"}}}, "bench-node"
            )
            stack.callback(loop_daemon.destroy)
            loop = CsiClient(csi_socket(loop_daemon, "bench-loop"))
            stack.callback(loop.close)
            node = client.call("NodeGetInfo").node_id
            for round_ in range(args.rounds):  # interleaved: drift hits both columns
                csi_round(client, node, work / "csi", csi_times)
                bare(host, dict(testbed.create_options), work / f"bare-{round_}", bare_times)
            publish["ebs"] = publishes(client, work / "pub-ebs", args.publishes, GiB)
            publish["loopfile"] = publishes(loop, work / "pub-loop", args.publishes, 64 << 20)
            stack.callback(unmount_all_under, str(work))
    finally:
        unmount_all_under(str(work))
        shutil.rmtree(work, ignore_errors=True)
    totals = [sum(step) for step in zip(*(csi_times[s] for s in CSI_STEPS), strict=True)]
    bare_totals = [
        sum(step)
        for step in zip(bare_times["create"], bare_times["first mount (format)"], strict=True)
    ]
    print(f"EBS (moto + loop devices), {args.rounds} rounds, ext4; milliseconds, p50 / p95\n")
    print(f"{'step':<28}{'csi':>14}{'bare':>14}")
    print("-" * 56)
    for step in CSI_STEPS:
        print(f"{step:<28}{summary(csi_times[step]):>14}{'':>14}")
    print(f"{'  bare create':<28}{'':>14}{summary(bare_times['create']):>14}")
    print(
        f"{'  bare attach+mkfs+mount':<28}{'':>14}{summary(bare_times['first mount (format)']):>14}"
    )
    print(f"{'total':<28}{summary(totals):>14}{summary(bare_totals):>14}")
    print(f"\nNodePublish of a staged volume, {args.publishes} targets; milliseconds, p50 / p95")
    for kind, samples in publish.items():
        print(f"{kind:<28}{summary(samples):>14}")


if __name__ == "__main__":
    main()
