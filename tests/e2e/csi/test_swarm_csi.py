"""Orlop's CSI plugin on a real three-node Docker Swarm (Engine 28), with a share (sshfs).

The session's Swarm (tests/e2e/csi/fixtures.py: three dockerd, one manager and two workers),
the Orlop CSI plugin (`scripts/build-plugin sshfs --csi`) enabled on each, the session's sshd
as the storage they share. Volumes are made with `docker volume create` on the manager."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.csi.fixtures import IMAGE, CsiSwarm, wait_until
from tests.support.names import unique

pytest_plugins = ["tests.e2e.csi.fixtures"]


def rows(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_share_written_by_a_replica_on_every_node(csi_swarm: CsiSwarm) -> None:
    volume, service = unique("shared"), unique("writers")
    csi_swarm.create_volume(volume)
    wait_until("volume created", lambda: "Info" in csi_swarm.volume(volume)["ClusterVolume"])
    csi_swarm.docker(
        "service", "create", "--detach", "--name", service, "--replicas", "3",
        "--replicas-max-per-node", "1", "--env", "NODE={{.Node.ID}}",
        "--mount", f"type=cluster,src={volume},dst=/data",
        IMAGE, "sh", "-c", "echo $NODE >> /data/rows; sleep 100000",
    )  # fmt: skip
    wait_until("a replica on each node", lambda: len(set(csi_swarm.running_on(service))) == 3)
    written = csi_swarm.base / volume / "rows"
    wait_until("three rows", lambda: len(rows(written)) == 3)
    assert set(rows(written)) == set(csi_swarm.swarm.node_states())  # one per node
    published = csi_swarm.volume(volume)["ClusterVolume"]["PublishStatus"]
    assert {p["State"] for p in published} == {"published"} and len(published) == 3
    csi_swarm.docker("service", "rm", service)
    wait_until("unpublished", lambda: not csi_swarm.volume(volume)["ClusterVolume"].get(
        "PublishStatus"))  # fmt: skip
    csi_swarm.docker("volume", "rm", volume)
    wait_until(
        "volume removed",
        lambda: volume not in csi_swarm.docker("volume", "ls", "--cluster", "-q").split(),
    )


def test_drain_moves_the_task_and_its_volume(csi_swarm: CsiSwarm) -> None:
    volume, service = unique("moving"), unique("writer")
    csi_swarm.create_volume(volume)
    csi_swarm.docker(
        "service", "create", "--detach", "--name", service,
        "--mount", f"type=cluster,src={volume},dst=/data",
        IMAGE, "sh", "-c",
        "i=$(wc -l < /data/rows 2>/dev/null || echo 0); "
        "while true; do i=$((i+1)); echo $i >> /data/rows; sync; sleep 0.1; done",
    )  # fmt: skip
    written = csi_swarm.base / volume / "rows"
    wait_until("rows written", lambda: len(rows(written)) >= 5)
    (first_node,) = csi_swarm.running_on(service)
    acknowledged = rows(written)
    csi_swarm.docker("node", "update", "--availability", "drain", first_node)
    try:
        moved = wait_until(
            "task on another node",
            lambda: [n for n in csi_swarm.running_on(service) if n != first_node] != [],
        )
        count = len(rows(written))
        wait_until("rows written on the new node", lambda: len(rows(written)) > count + 3)
        print(f"drain → running elsewhere: {moved:.1f} s")
    finally:
        csi_swarm.docker("node", "update", "--availability", "active", first_node)
    after = rows(written)
    assert after[: len(acknowledged)] == acknowledged  # every acknowledged row is there
    assert len(after) > len(acknowledged) + 3  # and the moved task went on writing
    csi_swarm.docker("service", "rm", service)
    wait_until("unpublished", lambda: not csi_swarm.volume(volume)["ClusterVolume"].get(
        "PublishStatus"))  # fmt: skip
    csi_swarm.docker("volume", "rm", volume)


def test_a_killed_node_s_task_comes_back_elsewhere(csi_swarm: CsiSwarm) -> None:
    volume, service = unique("survivor"), unique("writer")
    csi_swarm.create_volume(volume)
    csi_swarm.docker(
        "service", "create", "--detach", "--name", service,
        "--constraint", "node.role==worker",
        "--mount", f"type=cluster,src={volume},dst=/data",
        IMAGE, "sh", "-c",
        "while true; do date +%s%N >> /data/rows; sync; sleep 0.1; done",
    )  # fmt: skip
    written = csi_swarm.base / volume / "rows"
    wait_until("rows written", lambda: len(rows(written)) >= 5)
    (first_node,) = csi_swarm.running_on(service)
    (victim,) = [n for n in csi_swarm.swarm.nodes if n.node_id() == first_node]
    victim.kill9()
    acknowledged = rows(written)
    try:
        wait_until(
            "the task running on the other worker",
            lambda: [n for n in csi_swarm.running_on(service) if n != first_node] != [],
            timeout=120,
        )
        count = len(rows(written))
        wait_until("rows written there", lambda: len(rows(written)) > count + 3)
        assert rows(written)[: len(acknowledged)] == acknowledged
    finally:
        victim.start()  # the node comes back: its plugin is enabled again by its dockerd
        csi_swarm.swarm.wait_ready(len(csi_swarm.swarm.nodes), timeout=120)
        csi_swarm.docker("service", "rm", service)
    wait_until("unpublished", lambda: not csi_swarm.volume(volume)["ClusterVolume"].get(
        "PublishStatus"), timeout=120)  # fmt: skip
    csi_swarm.docker("volume", "rm", volume)


def test_bad_parameters_show_orlops_error(csi_swarm: CsiSwarm) -> None:
    volume = unique("bad")
    csi_swarm.create_volume(volume, "--opt", "colour=red")
    try:
        # Swarm keeps the volume pending and retries; what Orlop said is in the manager's log
        # of its plugin (Swarm shows no creation error in `docker volume inspect`).
        def refused() -> bool:
            log = csi_swarm.swarm.manager.log()
            return "CreateVolume: INVALID_ARGUMENT: unknown option colour" in log

        wait_until("Orlop's error for the bad parameter", refused, timeout=30)
        listed = csi_swarm.docker("volume", "ls", "--cluster").splitlines()
        (row,) = [line for line in listed if line.startswith(volume)]
        assert row.endswith("pending creation")
        assert not (csi_swarm.base / volume).exists()  # nothing half-made
    finally:
        csi_swarm.docker("volume", "rm", "--force", volume, check=False)
