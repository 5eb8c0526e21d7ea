"""The real OpenStack Cinder for the tests: its own cached virtualenv, one process per session.

Cinder 29 brings ~125 packages that must not meet Orlop's; they live in a virtualenv under
/var/cache/orlop-test/ named by the hash of `requirements.txt` (every package pinned),
built once per machine (`scripts/setup --test` builds it, so does the first test needing it):

    python -m tests.servers.cinder.venv    # build the cached virtualenv, print its path

`CinderServer` runs `server.py` (API + scheduler + volume service in one process)
with that virtualenv's python on a free port of 127.0.0.1, a private state directory and
SQLite, and stops it. Authentication is noauth: a token `admin:<project>` is trusted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import stop_process

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
CACHE = Path(os.environ.get("ORLOP_TEST_CACHE", "/var/cache/orlop-test"))
INSTALL_TIMEOUT = 1800  # a cold pip install of ~125 packages on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_path() -> Path:
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:16]
    return CACHE / f"cinder-venv-{key}"


def cinder_venv() -> Path:
    """The cached virtualenv with Cinder, built (under a lock) if it is not there yet."""
    venv = venv_path()
    if (venv / ".complete").exists():
        return venv
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "cinder-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".complete").exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a build that was interrupted
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            subprocess.run(
                [*pip, "--disable-pip-version-check", "--no-deps", "-r", str(REQUIREMENTS)],
                check=True,
                timeout=INSTALL_TIMEOUT,
            )
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        (venv / ".complete").touch()
    return venv


class CinderServer:
    """Cinder's API, scheduler and volume service in one subprocess on 127.0.0.1."""

    def __init__(self, nova_url: str | None = None, keystone_url: str | None = None) -> None:
        self.project = secrets.token_hex(16)  # Cinder wants a hex project ID in its URLs
        self.token = f"admin:{self.project}"
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.root}/v3/{self.project}"
        self.nova_url, self.keystone_url = nova_url, keystone_url
        # SQLite syncs every commit: in memory (/dev/shm) Cinder answers faster on a busy disk
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.state = Path(tempfile.mkdtemp(prefix="orlop-cinder-", dir=shm))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> CinderServer:
        python = cinder_venv() / "bin" / "python"
        # -P: not this folder first on sys.path, where our cinder.py would shadow Cinder
        args = [str(python), "-P", str(HERE / "server.py"), str(self.state), str(self.port)]
        if self.nova_url and self.keystone_url:
            args += [self.nova_url, self.token, self.keystone_url]
        with open(self.state / "stderr.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.process.stdout.fileno(), False)
        seen = b""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Cinder exited {self.process.returncode}: {self.log_tail()}")
            seen += self.process.stdout.read() or b""
            if b"READY" in seen:
                self.wait_for_volume_service(deadline)
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Cinder did not start within {timeout}s: {self.log_tail()}")

    def wait_for_volume_service(self, deadline: float) -> None:
        """The scheduler places volumes only once the volume service has reported in."""
        while time.monotonic() < deadline:
            services = self.request("GET", "/os-services")["services"]
            if any(s["binary"] == "cinder-volume" and s["state"] == "up" for s in services):
                return
            time.sleep(0.3)
        raise RuntimeError(f"Cinder's volume service did not come up: {self.log_tail()}")

    def request(self, method: str, path: str, body: Any = None, microversion: str = "3.44") -> Any:
        """A direct call to Cinder, bypassing Orlop (what the tests check against)."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "X-Auth-Token": self.token,
                "Content-Type": "application/json",
                "OpenStack-API-Version": f"volume {microversion}",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
        return json.loads(data) if data else None

    def wait_volume(self, volume_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            volume: dict[str, Any] = self.request("GET", f"/volumes/{volume_id}")["volume"]
            if volume["status"] in statuses or time.monotonic() > deadline:
                return volume
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for name in ("cinder.log", "stderr.log"):
            path = self.state / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return text

    def stop(self) -> None:
        stop_process(self.process)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.state, ignore_errors=True)


if __name__ == "__main__":
    print(cinder_venv())
