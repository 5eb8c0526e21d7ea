"""Run a real `orlop serve` process with its own config, state directory and sockets."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.plugin_client import PluginClient
from tests.support.processes import stop_process, unmount_all_under


def wait_for_socket(
    path: str, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None
) -> float:
    """Seconds until `path` accepts a connection; raise if it does not in time."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"daemon exited with status {process.returncode}")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return time.monotonic() - start
        except OSError:
            time.sleep(0.01)
        finally:
            probe.close()
    raise TimeoutError(f"{path} not listening after {timeout}s")


class OrlopDaemon:
    """One orlop daemon under test; `drivers` maps driver name → driver config."""

    def __init__(
        self,
        drivers: dict[str, dict[str, Any]],
        plugin_dir: str | None = None,
        root: str | None = None,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        log_level: str = "debug",
        cwd: str | None = None,
    ) -> None:
        # `python`: the interpreter that runs `-m orlop` (a benchmark runs the managed
        # plugin's own, with its packages on PYTHONPATH through `env`).
        self.python = python
        self.cwd = cwd  # None: this process's (where `-m orlop` finds the source tree)
        self.root = Path(root or tempfile.mkdtemp(prefix="orlop-test-"))
        self.state_dir = self.root / "state"
        self.plugin_dir = plugin_dir or str(self.root / "plugins")
        self.admin_socket = str(self.root / "admin.sock")
        self.drivers = drivers
        self.config_path = self.root / "orlop.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(self.state_dir),
                    "plugin_dir": self.plugin_dir,
                    "admin_socket": self.admin_socket,
                    "log_level": log_level,
                    "drivers": drivers,
                }
            )
        )
        self.log_path = self.root / "orlop.log"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def socket(self, driver: str) -> str:
        return os.path.join(self.plugin_dir, f"{driver}.sock")

    def start(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> OrlopDaemon:
        env = {**os.environ, **self.env, **(extra_env or {})}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", "orlop", "--config", str(self.config_path), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
            )
        if wait:
            started = time.monotonic()
            for driver in self.drivers:
                wait_for_socket(self.socket(driver), process=self.process)
            wait_for_socket(self.admin_socket, process=self.process)
            self.startup_seconds = time.monotonic() - started
        return self

    def client(self, driver: str | None = None) -> PluginClient:
        return PluginClient(self.socket(driver or next(iter(self.drivers))))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "orlop", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"orlop {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Send `sig` and wait; returns the exit status."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the daemon and undo every mount it left: for fixture teardown."""
        stop_process(self.process)
        unmount_all_under(str(self.root))
        for driver in self.drivers:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket(driver))

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
