"""A real OpenSSH server on 127.0.0.1 for network-volume tests: throw-away keys and user.

`Sshd().start()` runs Debian's /usr/sbin/sshd in the foreground as a child, with its own
host key, a client key authorised for root, and a known_hosts file for clients. `stop()`
also ends the per-connection processes, as a real server going down would; `start()` again
brings it back on the same port with the same keys.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (sshd's per-connection processes leave its session)."""
    found: list[int] = []
    parents = {pid}
    changed = True
    while changed:
        changed = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in found:
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid in parents:
                found.append(int(entry))
                parents.add(int(entry))
                changed = True
    return found


class Sshd:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orlop-sshd-"))
        self.port = free_port()
        self.host_key = self.root / "ssh_host_ed25519_key"
        self.client_key = self.root / "id_ed25519"
        self.other_key = self.root / "id_other"  # a valid key the server does not accept
        self.authorized_keys = self.root / "authorized_keys"
        self.known_hosts = self.root / "known_hosts"
        self.config = self.root / "sshd_config"
        self.log_path = self.root / "sshd.log"
        self.data = self.root / "data"  # where tests put volumes on the "server"
        self.process: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        self.password: str | None = None

    def _keygen(self, path: Path, comment: str) -> None:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def start(self) -> Sshd:
        if not self.host_key.exists():
            self._keygen(self.host_key, "orlop-test-host")
            self._keygen(self.client_key, "orlop-test-client")
            self._keygen(self.other_key, "orlop-test-other")
            self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
            host_pub = Path(f"{self.host_key}.pub").read_text().split()
            self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
            self.data.mkdir(mode=0o755)
            self.config.write_text(
                "\n".join(
                    [
                        f"Port {self.port}",
                        "ListenAddress 127.0.0.1",
                        f"HostKey {self.host_key}",
                        f"PidFile {self.root / 'sshd.pid'}",
                        f"AuthorizedKeysFile {self.authorized_keys}",
                        "StrictModes no",
                        "PermitRootLogin yes",
                        "PasswordAuthentication yes",
                        "KbdInteractiveAuthentication no",
                        "UsePAM no",
                        "Subsystem sftp internal-sftp",
                        "LogLevel VERBOSE",
                        "MaxStartups 100",
                        "MaxSessions 100",
                        "",
                    ]
                )
            )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            raise RuntimeError(f"sshd did not start:\n{self.log()[-2000:]}") from None
        return self

    def add_password_user(self) -> tuple[str, str]:
        """A throw-away local user with a random password (removed by destroy)."""
        if self.user is None:
            self.user = f"orlopt{secrets.token_hex(3)}"
            self.password = secrets.token_urlsafe(12)
            home = self.root / "home"
            subprocess.run(
                ["useradd", "-M", "-d", str(home), "-s", "/bin/sh", self.user],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self.root.chmod(0o755)  # the user must reach its home below it
            home.mkdir(exist_ok=True)
            shutil.chown(home, self.user, self.user)
            subprocess.run(
                ["chpasswd"],
                input=f"{self.user}:{self.password}\n".encode(),
                check=True,
                capture_output=True,
                timeout=30,
            )
        assert self.password is not None
        return self.user, self.password

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server and drop every open connection, as a server crash would."""
        if self.process is None:
            return
        connections = _children(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        self.process.wait(timeout=15)
        for pid in connections:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        if self.user is not None:
            subprocess.run(["userdel", self.user], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    def options(self, **extra: str) -> dict[str, str]:
        """Volume options for an sshfs volume on this server, as root with the client key."""
        return {
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": "root",
            "path": str(self.data),
            "identity": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            **extra,
        }


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word: a hung server."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stopping.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stopping.set()
        thread.join(5)
        for connection in held:
            connection.close()
        server.close()
