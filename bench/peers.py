"""The servers the benchmarks measure: a real `orlop serve` and a real `rclone serve docker`.

Each runs with private state, cache and socket directories, so a benchmark never touches
a real installation or another engineer's daemons, and is removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadgen import Connection, post  # noqa: E402
from tests.support.daemon import OrlopDaemon, wait_for_socket  # noqa: E402
from tests.support.names import unique  # noqa: E402
from tests.support.processes import stop_process, unmount_all_under  # noqa: E402


def call(conn: Connection, endpoint: str, **body: Any) -> dict[str, Any]:
    """One request, answer checked: HTTP 200 and an empty (or absent) Err."""
    request = post(f"/VolumeDriver.{endpoint}", json.dumps(body).encode())
    status, raw = conn.call(request, body=True)
    answer = json.loads(raw) if raw else {}
    if status != b"200" or answer.get("Err"):
        raise RuntimeError(f"{endpoint} {body} failed: HTTP {status.decode()} {raw[:300]!r}")
    return answer


class Peer:
    """A plugin-protocol server under test."""

    label: str
    socket: str
    pid: int

    def create_opts(self, name: str) -> dict[str, str]:
        return {}

    def start(self) -> Peer:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def reset(self, names: list[str]) -> None:
        """Start over with fresh state holding `names`: after the server hung."""
        self.destroy()
        self.__init__()  # type: ignore[misc]
        self.start()
        self.create(names)

    def create(self, names: list[str]) -> None:
        conn = Connection(self.socket, timeout=60)
        try:
            for name in names:
                call(conn, "Create", Name=name, Opts=self.create_opts(name))
        finally:
            conn.close()

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


class Orlop(Peer):
    """`python -m orlop --config X serve` with the directory backend, log level info."""

    label = "orlop"

    def __init__(self, plugin_dir: str | None = None, driver: str | None = None) -> None:
        self.driver = driver or unique("orlop-bench")
        self.daemon = OrlopDaemon({self.driver: {"backend": "directory"}}, plugin_dir=plugin_dir)
        # The test fixture logs at debug; measure what a deployment runs.
        config = yaml.safe_load(self.daemon.config_path.read_text())
        config["log_level"] = "info"
        self.daemon.config_path.write_text(yaml.safe_dump(config))
        self.socket = self.daemon.socket(self.driver)

    def start(self) -> Orlop:
        self.daemon.start()
        assert self.daemon.process is not None
        self.pid = self.daemon.process.pid
        return self

    def stop(self) -> None:
        self.daemon.stop()

    def destroy(self) -> None:
        self.daemon.destroy()


class Rclone(Peer):
    """`rclone serve docker` with its own base, cache and config dirs, on a private socket.

    Volumes use rclone's on-the-fly local backend (`type=local`, `path=…`): a Mount is a
    real FUSE mount of a local directory, as with any rclone remote.
    """

    label = "rclone"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orlop-bench-rclone-"))
        self.socket = str(self.root / "rclone.sock")
        self.data = self.root / "data"
        self.process: subprocess.Popen[bytes] | None = None

    def create_opts(self, name: str) -> dict[str, str]:
        return {"type": "local", "path": str(self.data / name)}

    def start(self) -> Rclone:
        for sub in ("base", "cache", "data"):
            (self.root / sub).mkdir(exist_ok=True)
        rclone = shutil.which("rclone") or "/usr/bin/rclone"
        with open(self.root / "rclone.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    rclone,
                    "serve",
                    "docker",
                    "--config",
                    str(self.root / "rclone.conf"),
                    "--cache-dir",
                    str(self.root / "cache"),
                    "--base-dir",
                    str(self.root / "base"),
                    "--socket-addr",
                    self.socket,
                    "--no-spec",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_socket(self.socket, process=self.process)
        self.pid = self.process.pid
        return self

    def stop(self) -> None:
        stop_process(self.process)
        unmount_all_under(str(self.root))

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running(peer: Orlop | Rclone) -> Iterator[Orlop | Rclone]:
    try:
        yield peer.start()
    finally:
        peer.destroy()


def environment() -> str:
    """One line describing the machine's state, printed with every table."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}"
