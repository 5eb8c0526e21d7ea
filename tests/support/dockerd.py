"""A private dockerd for end-to-end tests: its own data-root, exec-root and API socket."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from orlop.host.mounts import mounts_under, unmount

IMAGE = "orlop-test-busybox:1"
BUSYBOX_APPLETS = [
    "sh",
    "cat",
    "echo",
    "ls",
    "sleep",
    "dd",
    "sha256sum",
    "mkdir",
    "rm",
    "touch",
    "df",
    "stat",
    "id",
    "head",
    "tail",
    "wc",
    "seq",
    "test",
    "true",
    "false",
    "sync",
    "grep",
]


class DockerError(AssertionError):
    pass


class Dockerd:
    def __init__(self) -> None:
        token = secrets.token_hex(3)
        self.root = Path(tempfile.mkdtemp(prefix="orlop-dockerd-"))
        # containerd's sockets live under exec-root: keep that path short.
        self.exec_root = Path(f"/run/orlop-d-{token}")
        self.socket = str(self.root / "docker.sock")
        self.docker_config = self.root / "client"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "dockerd.log"
        self.docker = shutil.which("docker") or "/usr/bin/docker"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.docker_config),
        }

    def start(self) -> Dockerd:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        self.docker_config.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    dockerd,
                    "--data-root",
                    str(self.root / "data"),
                    "--exec-root",
                    str(self.exec_root),
                    "--pidfile",
                    str(self.root / "dockerd.pid"),
                    "-H",
                    f"unix://{self.socket}",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--bridge=none",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DockerError(f"dockerd exited at start:\n{self.log()[-3000:]}")
            if os.path.exists(self.socket) and self.run("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise DockerError(f"dockerd did not answer within 60s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.docker, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise DockerError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr}{result.stdout}"
            )
        return result

    def sh(self, volume: str, script: str, *options: str, check: bool = True) -> str:
        """Run `sh -c script` in a throw-away container with `volume` at /data; its stdout.

        `volume` is a `-v` spec (`name` or `name:/path`), or a full `--mount` spec when it
        starts with `type=`; `options` go before the image (e.g. --volume-driver D).
        """
        if volume.startswith("type="):
            where = ["--mount", volume]
        else:
            where = ["-v", volume if ":" in volume else f"{volume}:/data"]
        result = self.run(
            "run",
            "--rm",
            "--network",
            "none",
            *where,
            *options,
            IMAGE,
            "sh",
            "-c",
            script,
            check=check,
        )
        return result.stdout

    def ensure_image(self) -> str:
        """Import a busybox-static image (no registry is reachable)."""
        if self.run("image", "inspect", IMAGE, check=False).returncode == 0:
            return IMAGE
        busybox = shutil.which("busybox") or "/bin/busybox"
        rootfs = self.root / "rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        # No /data in the image: Docker would copy its mode and owner onto empty volumes.
        for directory in ("tmp", "proc", "sys", "dev", "etc"):
            (rootfs / directory).mkdir(exist_ok=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            link = rootfs / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
        result = subprocess.run(
            [self.docker, "import", "-", IMAGE],
            input=tar.stdout,
            capture_output=True,
            env=self.env,
            timeout=120,
        )
        if result.returncode != 0:
            raise DockerError(f"docker import failed: {result.stderr.decode()}")
        return IMAGE

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                ids = self.run("ps", "-aq", check=False, timeout=30).stdout.split()
                if ids:
                    self.run("rm", "-f", *ids, check=False, timeout=60)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

    def stop_keeping_containers(self, timeout: float = 60) -> None:
        """SIGTERM as at a host's shutdown: dockerd stops its containers and keeps them, so
        the next start starts those with a restart policy again."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            for root in (self.exec_root, self.root):
                for mounted in mounts_under(str(root)):
                    with contextlib.suppress(Exception):
                        unmount(mounted, lazy_if_busy=True)
            shutil.rmtree(self.exec_root, ignore_errors=True)
            shutil.rmtree(self.root, ignore_errors=True)
