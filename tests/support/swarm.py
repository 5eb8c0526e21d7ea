"""A Docker Swarm of Engine 28 daemons on this machine, for the CSI e2e.

Each node is its own dockerd (Engine 28 from /var/cache/orlop-test, fetched by
`scripts/setup --test`) with its own data-root, exec-root, API socket and loopback address
for Swarm's traffic, on Debian 12's containerd and runc. Nothing leaves the machine. One
manager, the rest workers.

The addresses are a block of 127.0.0.0/8 of the session's own (127.A.B.1, .2, …): two test
sessions on one machine (a full run and a branch's) each bind Swarm's ports (2377, 7946) on
their own addresses. Nodes start, and plugins are created and enabled, on all nodes at once:
each step is mostly waiting (dockerd's start, unpacking a plugin's root filesystem)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tests.support.dockerd import Dockerd, DockerError

ENGINE_CACHE = "/var/cache/orlop-test"
ENGINE_VERSION = "28.5.2+dfsg4-5"  # as scripts/setup fetches it
SWARM_PORT = 2377
T = TypeVar("T")
R = TypeVar("R")


def engine_dir(version: str = ENGINE_VERSION) -> Path | None:
    """The cached Engine 28, or None when `scripts/setup --test` has not fetched it."""
    path = Path(ENGINE_CACHE) / f"docker-{version}"
    return path if (path / "usr" / "sbin" / "dockerd").exists() else None


class SwarmNode(Dockerd):
    """One Engine 28 dockerd, Swarm traffic on `address`."""

    def __init__(self, engine: Path, address: str, name: str) -> None:
        super().__init__()
        self.engine = engine
        self.address = address
        self.name = name
        self.docker = str(engine / "usr" / "bin" / "docker")

    def start(self) -> SwarmNode:
        self.docker_config.mkdir(exist_ok=True)
        path = f"{self.engine / 'usr' / 'sbin'}:{self.engine / 'usr' / 'bin'}:{os.environ['PATH']}"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.engine / "usr" / "sbin" / "dockerd"),
                    "--data-root", str(self.root / "data"),
                    "--exec-root", str(self.exec_root),
                    "--pidfile", str(self.root / "dockerd.pid"),
                    "-H", f"unix://{self.socket}",
                    "--iptables=false", "--ip6tables=false", "--bridge=none",
                    "--log-level=warn",
                    "--swarm-default-advertise-addr", self.address,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PATH": path},
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DockerError(f"dockerd {self.name} exited:\n{self.log()[-3000:]}")
            if os.path.exists(self.socket) and self.run("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise DockerError(f"dockerd {self.name} did not answer:\n{self.log()[-3000:]}")

    def kill9(self) -> None:
        """kill -9 of this node: its dockerd, containerd, every shim and all they run (the
        Orlop plugin, its FUSE clients, the containers). Mounts in the plugin's namespace go
        with its last process."""
        if self.process is None:
            return
        shims = _processes_naming(str(self.exec_root))
        doomed = set(shims) | _descendants(shims)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def node_id(self) -> str:
        return self.run("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()

    def plugin_pids(self) -> list[int]:
        """PIDs of the Orlop plugins this node runs (each in its own mount namespace)."""
        found = []
        for pid in _descendants(_processes_naming(str(self.exec_root))):
            with contextlib.suppress(OSError):
                if b"orlop.managed.start" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        return sorted(found)


def on_all(items: Iterable[T], work: Callable[[T], R]) -> list[R]:
    """`work(item)` for every item at once (threads: each mostly waits on a subprocess);
    the results in order, the first failure raised after all ended."""
    listed = list(items)
    with ThreadPoolExecutor(max_workers=max(1, len(listed))) as pool:
        futures = [pool.submit(work, item) for item in listed]
    return [future.result() for future in futures]


def loopback_block() -> str:
    """`127.A.B`: a block of loopback addresses of this session's own."""
    return f"127.{100 + secrets.randbelow(150)}.{secrets.randbelow(250) + 1}"


def _processes_naming(path: str) -> list[int]:
    """PIDs whose command line names `path` (a node's containerd and shims)."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if path.encode() in Path(cmdline).read_bytes():
                found.append(int(cmdline.split("/")[2]))
    return [pid for pid in found if pid != os.getpid()]


def _descendants(roots: list[int]) -> set[int]:
    parents: dict[int, int] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            parents[int(stat.split("/")[2])] = int(fields[1])
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


class Swarm:
    """`count` nodes: nodes[0] the manager, the others workers."""

    def __init__(self, engine: Path, count: int = 3, block: str | None = None) -> None:
        block = block or loopback_block()
        self.nodes = [
            SwarmNode(engine, f"{block}.{index + 1}", f"node{index + 1}") for index in range(count)
        ]

    @property
    def manager(self) -> SwarmNode:
        return self.nodes[0]

    def start(self) -> Swarm:
        on_all(self.nodes, SwarmNode.start)
        manager = self.manager
        address = f"{manager.address}:{SWARM_PORT}"
        manager.run("swarm", "init", "--advertise-addr", address, "--listen-addr", address)
        token = manager.run("swarm", "join-token", "-q", "worker").stdout.strip()

        def join(node: SwarmNode) -> None:
            own = f"{node.address}:{SWARM_PORT}"
            node.run(
                "swarm", "join", "--token", token, "--advertise-addr", own,
                "--listen-addr", own, address,
            )  # fmt: skip

        on_all(self.nodes[1:], join)
        self.wait_ready(len(self.nodes))
        return self

    def node_states(self) -> dict[str, dict[str, str]]:
        """Hostname-independent: node ID → its status and availability, as the manager says."""
        out = self.manager.run("node", "ls", "--format", "{{json .}}").stdout
        return {
            row["ID"]: {"status": row["Status"], "availability": row["Availability"]}
            for row in map(json.loads, out.splitlines())
        }

    def wait_ready(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.node_states()
            if sum(s["status"] == "Ready" for s in states.values()) >= count:
                return
            time.sleep(0.2)
        raise DockerError(f"swarm not ready: {self.node_states()}")

    def csi_node_ids(self, plugin: str) -> dict[str, str]:
        """Swarm node ID → the CSI node ID the manager knows for `plugin` there."""
        ids = list(self.node_states())
        out = self.manager.run(
            "node", "inspect", "-f", "{{.ID}} {{json .Description.CSIInfo}}", *ids
        ).stdout
        known = {}
        for line in out.splitlines():
            node, info = line.split(" ", 1)
            for entry in json.loads(info) or []:
                if entry["PluginName"] == plugin:
                    known[node] = entry["NodeID"]
        return known

    def wait_csi_nodes(self, plugin: str, timeout: float = 90) -> dict[str, str]:
        """Wait until the manager knows every node's CSI node ID for `plugin`.

        A node reports a plugin enabled after it joined only with its next description
        update (every ~20 s); a volume Swarm tries to publish before that fails, and the
        manager retries it with a doubling backoff (0.2 s … minutes), which made a test's
        first volume take anything from seconds to minutes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            known = self.csi_node_ids(plugin)
            if len(known) == len(self.nodes):
                return known
            time.sleep(0.5)
        raise DockerError(f"CSI node IDs for {plugin} known only for {self.csi_node_ids(plugin)}")

    def destroy(self) -> None:
        def leave(node: SwarmNode) -> None:
            with contextlib.suppress(Exception):
                node.run("swarm", "leave", "--force", check=False, timeout=30)

        def destroy(node: SwarmNode) -> None:
            with contextlib.suppress(Exception):
                node.destroy()

        on_all(self.nodes, leave)
        on_all(self.nodes, destroy)


def build_csi_plugin(kind: str, stage_dir: Path, cache: str) -> Path:
    """`scripts/build-plugin KIND --csi --no-create` (root filesystem cached): the staged dir."""
    root = Path(__file__).resolve().parents[2]
    args = [str(root / "scripts" / "build-plugin"), kind, "--csi", "--no-create"]
    args += ["--stage-dir", str(stage_dir), "--cache-dir", cache]
    result = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise DockerError(f"build-plugin failed:\n{result.stderr[-4000:]}{result.stdout}")
    return stage_dir


def install_plugin(
    node: SwarmNode, name: str, staged: Path, settings: dict[str, str], node_id: str | None = None
) -> None:
    """`docker plugin create`, `set` and `enable` on one node; its CSI node ID is `node_id`
    (default its name; "" lets Orlop take the provider's identity of the host)."""
    node.run("plugin", "create", name, str(staged), timeout=300)
    values = [f"{key}={value}" for key, value in settings.items()]
    own_id = node.name if node_id is None else node_id
    node.run("plugin", "set", name, *values, f"ORLOP_CSI_NODE_ID={own_id}")
    node.run("plugin", "enable", name, timeout=180)
