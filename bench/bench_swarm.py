"""A Swarm service moved between nodes: the time until it runs again on the new node, with
an Orlop cloud-disk volume (EBS) against the same service without a volume (the peer).

    .venv/bin/python bench/bench_swarm.py [--moves 4]

Root; needs the cached Engine 28 (`scripts/setup --test`). The e2e's three-node Swarm on
this machine (tests/e2e/csi/fixtures.py), the Orlop EBS CSI plugin on every node, EC2 on
moto behind the proxy that refuses a second attachment, each disk a real loop device on the
node that attaches it. Each move drains the worker running the task (the other worker
active) and times `docker node update --availability drain` → the task running on the other
worker (polled every 0.2 s through the manager's CLI, as the e2e does). Both services use
`--stop-grace-period 1s` and a loop that ends at SIGTERM. The volume's move is serial by
nature (the old task stops, its node lets go of the disk, the new node takes it); the
peer's new task starts while the old one stops. Columns: p50 and max over the moves;
`Orlop's share` = the volume's p50 minus the peer's p50. Target (issue 18): Orlop adds
≤ 1 s to what Swarm itself takes with a volume-less service. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.csi.fixtures import IMAGE, CsiSwarm, ebs_plugin, session_swarm, wait_until
from tests.servers.ec2.server import Ec2Proxy, MotoServer, unset_ca_bundles
from tests.support.names import unique
from tests.support.swarm import engine_dir

# Ends on SIGTERM (sh as PID 1 would ignore it and wait out the grace period): a move with
# a volume must wait for the old task to stop, the peer's need not.
LOOP = "trap 'exit 0' TERM; while true; do date +%s%N >> /data/rows 2>/dev/null; sleep 0.2; done"


def service_args(name: str, volume: str | None) -> list[str]:
    mount = ["--mount", f"type=cluster,src={volume},dst=/data"] if volume else []
    return [
        "service", "create", "--detach", "--name", name, "--stop-grace-period", "1s",
        "--constraint", "node.role==worker", *mount, IMAGE, "sh", "-c", LOOP,
    ]  # fmt: skip


def moves(cluster: CsiSwarm, service: str, count: int) -> list[float]:
    """Drain the worker running `service`, `count` times: the seconds each move took."""
    _, *workers = cluster.swarm.nodes
    ids = [worker.node_id() for worker in workers]
    wait_until("running", lambda: len(cluster.running_on(service)) == 1, timeout=180)
    taken = []
    for _ in range(count):
        (here,) = cluster.running_on(service)
        (there,) = [node for node in ids if node != here]
        cluster.docker("node", "update", "--availability", "active", there)
        started = time.monotonic()
        cluster.docker("node", "update", "--availability", "drain", here)
        wait_until(
            "running on the other worker",
            lambda: cluster.running_on(service) == [there],  # noqa: B023
            timeout=180,
        )
        taken.append(time.monotonic() - started)
    for node in ids:
        cluster.docker("node", "update", "--availability", "active", node)
    return taken


def timed_service(cluster: CsiSwarm, count: int, volume: str | None) -> list[float]:
    service = unique("bench-move")
    cluster.docker(*service_args(service, volume))
    try:
        return moves(cluster, service, count)
    finally:
        cluster.docker("service", "rm", service, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--moves", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_swarm needs root (dockerd, loop devices, mounts)")
    engine = engine_dir()
    if engine is None:
        sys.exit("Docker Engine 28 is not cached: run scripts/setup --test")
    unset_ca_bundles()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orlop-bench-")))
        moto = MotoServer().start()
        stack.callback(moto.stop)
        proxy = Ec2Proxy(moto.url)
        stack.callback(proxy.stop)
        swarm = stack.enter_context(session_swarm(engine))
        cluster = stack.enter_context(ebs_plugin(swarm, moto, proxy, work / "ebs-csi"))
        volume = unique("bench-disk")
        cluster.create_volume(volume, "--required-bytes", "1G", sharing="none", scope="single")
        wait_until("volume created", lambda: "Info" in cluster.volume(volume)["ClusterVolume"])
        peer = timed_service(cluster, args.moves, None)
        disk = timed_service(cluster, args.moves, volume)
        wait_until("unpublished", lambda: not cluster.published(volume), timeout=120)
        cluster.docker("volume", "rm", volume)
    rows = [("no volume (Swarm alone)", peer), ("Orlop EBS cluster volume", disk)]
    print(f"\nSwarm service move (drain → running on the other worker), {args.moves} moves")
    print(f"{'service':<28}{'p50 s':>8}{'max s':>8}   each")
    for label, taken in rows:
        each = " ".join(f"{t:.1f}" for t in taken)
        print(f"{label:<28}{statistics.median(taken):>8.2f}{max(taken):>8.2f}   {each}")
    share = statistics.median(disk) - statistics.median(peer)
    print(f"Orlop's share (p50 difference): {share:+.2f} s   (target ≤ +1 s)")


if __name__ == "__main__":
    main()
