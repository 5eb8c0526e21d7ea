"""The session's three-node Swarm (Engine 28) and the Orlop CSI plugins on it.

One Swarm per session (`swarm`), started once, whatever test module asks for it; each CSI
plugin is built and enabled on every node the first time a test needs it:
* `csi_swarm`: the sshfs plugin, the session's sshd as the storage the nodes share;
* `ebs_swarm`: the EBS plugin, each node one EC2 instance of the test server (moto behind
  the proxy that refuses a second attachment); a disk attached to a node's instance appears
  there as a real loop device, under a directory of the host's /dev that each plugin sees
  through its /dev bind.
A module loads them with `pytest_plugins = ["tests.e2e.csi.fixtures"]`."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.ec2.server import (
    CREDENTIALS,
    REGION,
    ZONE,
    Ec2Proxy,
    MotoServer,
    SimulatedNode,
    namespace_volumes,
    run_instance,
)
from tests.servers.sshd.server import Sshd
from tests.support.cloud.presenter import DevicePresenter
from tests.support.names import unique
from tests.support.swarm import (
    Swarm,
    SwarmNode,
    build_csi_plugin,
    engine_dir,
    install_plugin,
    on_all,
)

pytest_plugins = ["tests.support.network_fixtures", "tests.servers.ec2.fixtures"]

PLUGIN_CACHE = "/var/cache/orlop-test/plugin"
IMAGE = "orlop-test-busybox:1"


def wait_until(what: str, check: Callable[[], bool], timeout: float = 90) -> float:
    """Poll `check` every 0.2 s; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


@dataclass
class CsiSwarm:
    """The Swarm with one Orlop CSI plugin enabled on every node."""

    swarm: Swarm
    plugin: str
    base: Path = Path("/nonexistent")  # a share's: where the storage keeps the volumes

    def docker(self, *args: str, check: bool = True) -> str:
        return self.swarm.manager.run(*args, check=check, timeout=120).stdout

    def create_volume(
        self, name: str, *options: str, sharing: str = "all", scope: str = "multi"
    ) -> None:
        self.docker(
            "volume", "create", "--driver", self.plugin, "--type", "mount",
            "--sharing", sharing, "--scope", scope, *options, name,
        )  # fmt: skip

    def volume(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.docker("volume", "inspect", name))
        return found[0]

    def published(self, name: str) -> list[dict[str, Any]]:
        status: list[dict[str, Any]] = self.volume(name)["ClusterVolume"].get("PublishStatus")
        return status or []

    def cluster_volumes(self) -> list[str]:
        return self.docker("volume", "ls", "--cluster", "-q").split()

    def running_on(self, service: str) -> list[str]:
        """Swarm node IDs of the tasks of `service` that run now (two CLI calls)."""
        ids = self.docker("service", "ps", "-q", "--filter", "desired-state=running", service)
        if not ids.split():
            return []
        states = self.docker("inspect", "-f", "{{.NodeID}} {{.Status.State}}", *ids.split())
        return [line.split()[0] for line in states.splitlines() if line.endswith(" running")]

    def restart(self, node: SwarmNode) -> None:
        """Start a node killed with kill9 again: Ready in the Swarm, its plugin enabled by
        its dockerd and known to the manager again (a node's CSI info is refreshed only
        with its description; a publish before that fails "CSI node ID not found")."""
        node.start()
        self.swarm.wait_ready(len(self.swarm.nodes), timeout=120)
        wait_until("the plugin enabled again", lambda: bool(node.plugin_pids()), timeout=120)
        self.swarm.wait_csi_nodes(self.plugin)

    def container_of(self, service: str, node_id: str) -> tuple[SwarmNode, str]:
        """The node running `service`'s task on `node_id`, and that task's container ID."""
        ids = self.docker("service", "ps", "-q", "--filter", "desired-state=running", service)
        for task in ids.split():
            state = json.loads(self.docker("inspect", "-f", "{{json .}}", task))
            if state["NodeID"] == node_id and state["Status"]["State"] == "running":
                (node,) = [n for n in self.swarm.nodes if n.node_id() == node_id]
                return node, state["Status"]["ContainerStatus"]["ContainerID"]
        raise AssertionError(f"no running task of {service} on {node_id}")


@pytest.fixture(scope="session")
def swarm() -> Iterator[Swarm]:
    """Three Engine 28 dockerd, one manager and two workers, the test image on each."""
    engine = engine_dir()
    if engine is None:
        pytest.skip("Docker Engine 28 is not cached: run scripts/setup --test")
    with session_swarm(engine) as started:
        yield started


@contextlib.contextmanager
def session_swarm(engine: Path) -> Iterator[Swarm]:
    """The `swarm` fixture's Swarm, for a bench too: started, and destroyed at the end."""
    swarm = Swarm(engine)
    try:
        swarm.start()
        # Three engines share this machine's network namespace: only one could make the
        # ingress network's VXLAN, and no test publishes a port.
        swarm.manager.run("network", "rm", "ingress", input="y\n", check=False)
        swarm.manager.run("swarm", "update", "--dispatcher-heartbeat", "1s")
        on_all(swarm.nodes, SwarmNode.ensure_image)
        yield swarm
    finally:
        for node in swarm.nodes:  # what Orlop answered Swarm that failed, for a failed test
            print(
                node.name, *(line for line in node.log().splitlines() if "CSI " in line), sep="\n"
            )
        swarm.destroy()


def enable_everywhere(
    swarm: Swarm, kind: str, staged: Path, settings: Callable[[SwarmNode], dict[str, str]],
    node_id: Callable[[SwarmNode], str | None] = lambda node: None,
) -> str:  # fmt: skip
    """Create, configure and enable the plugin built in `staged` on every node: its name."""
    # Tagged: Swarm's manager keys a node's CSI node ID by the name the node reports (with
    # its tag, `:latest` if none was given) and a volume's plugin by `--driver` as typed; an
    # untagged `--driver` never finds the node IDs (moby/swarmkit#3215), and a cloud disk,
    # which needs ControllerPublishVolume, would stay pending for ever.
    plugin = unique(f"orlop-{kind}-csi") + ":1"
    on_all(
        swarm.nodes,
        lambda node: install_plugin(node, plugin, staged, settings(node), node_id(node)),
    )
    swarm.wait_csi_nodes(plugin)
    return plugin


@pytest.fixture(scope="session")
def csi_swarm(
    swarm: Swarm, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CsiSwarm]:
    """The sshfs CSI plugin on every node, sharing a directory of the session's sshd."""
    staged = build_csi_plugin("sshfs", tmp_path_factory.mktemp("sshfs-csi"), PLUGIN_CACHE)
    base = sshd.data / unique("swarm")
    base.mkdir()
    settings = {
        "SSHFS_HOST": "127.0.0.1",
        "SSHFS_PORT": str(sshd.port),
        "SSHFS_PATH": str(base),
        "SSHFS_PRIVATE_KEY": sshd.client_key.read_text(),
        "SSHFS_KNOWN_HOSTS": sshd.known_hosts.read_text(),
    }
    plugin = enable_everywhere(swarm, "sshfs", staged, lambda node: settings)
    try:
        yield CsiSwarm(swarm, plugin, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class EbsSwarm(CsiSwarm):
    """The Swarm with the EBS CSI plugin: node → its EC2 instance; EC2 as the tests see it."""

    moto: MotoServer | None = None
    namespace: str = ""
    instances: dict[str, str] = field(default_factory=dict)  # node name → instance ID
    simulated: dict[str, SimulatedNode] = field(default_factory=dict)  # node name → its devices

    def disks(self) -> list[dict[str, Any]]:
        """The namespace's EBS volumes as EC2 shows them now."""
        assert self.moto is not None
        return namespace_volumes(self.moto.client(), self.namespace)

    def holders(self, name: str) -> list[str]:
        """Instances EC2 shows volume `name` attached to (attaching, busy or detaching too)."""
        return [
            attachment["InstanceId"]
            for disk in self.disks()
            if {"Key": "orlop:volume", "Value": name} in disk.get("Tags", [])
            for attachment in disk.get("Attachments", [])
            if attachment["State"] != "detached"
        ]

    def presenting(self, name: str) -> list[str]:
        """Nodes whose instance shows a loop device for volume `name` now."""
        ids = {
            disk["VolumeId"]
            for disk in self.disks()
            if {"Key": "orlop:volume", "Value": name} in disk.get("Tags", [])
        }
        return [node for node, sim in self.simulated.items() if ids & set(sim.poller.mine)]


@pytest.fixture(scope="session")
def ebs_swarm(
    swarm: Swarm, moto: MotoServer, ec2_api: Ec2Proxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EbsSwarm]:
    """The EBS CSI plugin on every node; each node one instance of the EC2 test server."""
    with ebs_plugin(swarm, moto, ec2_api, tmp_path_factory.mktemp("ebs-csi")) as ebs:
        yield ebs


@contextlib.contextmanager
def ebs_plugin(
    swarm: Swarm, moto: MotoServer, ec2_api: Ec2Proxy, stage_dir: Path
) -> Iterator[EbsSwarm]:
    """The `ebs_swarm` fixture's plugin, for a bench too; its disks and instances go at
    the end."""
    staged = build_csi_plugin("ebs", stage_dir, PLUGIN_CACHE)
    client = moto.client()
    presenter = DevicePresenter()
    # Inside /dev: a plugin sees the host's /dev (rbind), nothing else of the host.
    devices = Path("/dev") / unique("orlop-swarm")
    namespace = unique("swarm-ns")
    instances = {node.name: run_instance(client) for node in swarm.nodes}
    simulated: dict[str, SimulatedNode] = {}
    try:
        for node in swarm.nodes:
            instance = instances[node.name]
            sim = SimulatedNode(client, instance, presenter, devices / instance, "nvme")
            sim.start()
            simulated[node.name] = sim

        def settings(node: SwarmNode) -> dict[str, str]:
            values: dict[str, Any] = {
                **CREDENTIALS,
                "region": REGION,
                "endpoint_url": ec2_api.url,
                "instance_id": instances[node.name],
                "availability_zone": ZONE,
                "namespace": namespace,
                "attach_timeout": 15,
                "detach_timeout": 15,
                "create_timeout": 15,
                "claim_settle": 0.3,
                "api_retry_base": 0.05,
                "api_retry_cap": 0.5,
                "poll_max": 0.2,
                # A disk the controller deleted leaves the nodes' lists within seconds.
                "discover_interval": 3,
                **simulated[node.name].settings(),
            }
            return {f"EBS_{key.upper()}": str(value) for key, value in values.items()}

        # The CSI node ID is the instance ID (Orlop's default for a cloud-disk kind).
        plugin = enable_everywhere(swarm, "ebs", staged, settings, lambda node: "")
        yield EbsSwarm(swarm, plugin, moto=moto, namespace=namespace, instances=instances,
                       simulated=simulated)  # fmt: skip
    finally:
        for sim in simulated.values():
            sim.stop()
        for disk in namespace_volumes(client, namespace):  # a failed test's
            for attachment in disk.get("Attachments", []):
                with contextlib.suppress(Exception):
                    client.detach_volume(
                        VolumeId=disk["VolumeId"], InstanceId=attachment["InstanceId"]
                    )
            with contextlib.suppress(Exception):
                client.delete_volume(VolumeId=disk["VolumeId"])
        with contextlib.suppress(Exception):
            client.terminate_instances(InstanceIds=list(instances.values()))
        presenter.destroy()
        shutil.rmtree(devices, ignore_errors=True)
