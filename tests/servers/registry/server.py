"""A private Docker registry on 127.0.0.1 (Debian's `docker-registry`): own config, storage
and port. Docker talks plain HTTP to registries on 127.0.0.0/8 without being told."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.support.processes import stop_process

REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Registry:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orlop-registry-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> Registry:
        for _ in range(attempts):  # the port may be taken between probe and bind
            self.port = free_port()
            config = self.root / "config.yml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "version": 0.1,
                        "log": {"level": "warn"},
                        "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}},
                        "http": {"addr": self.address},
                    }
                )
            )
            with open(self.root / "registry.log", "ab") as log:
                self.process = subprocess.Popen(
                    [REGISTRY, "serve", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._answers(timeout=30):
                return self
            stop_process(self.process)
            self.process = None
        raise RuntimeError(f"docker-registry did not start:\n{self.log()[-2000:]}")

    def _answers(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2) as answer:
                    return bool(answer.status == 200)
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        return False

    def log(self) -> str:
        path = self.root / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        try:
            stop_process(self.process)
        finally:
            self.process = None
            shutil.rmtree(self.root, ignore_errors=True)
