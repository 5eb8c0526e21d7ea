"""A real Samba server on 127.0.0.1:445 for share-volume tests, its state under a temp dir.

smbnetfs (the FUSE SMB client) only connects to port 445, so one server runs per test
session. Shares come and go as a test's storage API creates and deletes them: they live in
an included file that smbd reads again for each new tree connect. SMB logins need Unix
users: `add_user` makes throw-away ones (no home, no shell), removed by `destroy`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

SMBD = "/usr/sbin/smbd"
PORT = 445
# Port 445 is one per host: test sessions that run at once (several worktrees) take turns.
TURN_LOCK = "/run/lock/orlop-test-samba.lock"


def port_in_use(port: int = PORT) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Samba:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orlop-samba-"))
        self.config = self.root / "smb.conf"
        self.shares_config = self.root / "shares.conf"
        self.users: dict[str, str] = {}
        self.shares: dict[str, Path] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self._turn: int | None = None

    def start(self) -> Samba:
        self._turn = os.open(TURN_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._turn, fcntl.LOCK_EX)  # waits while another session's samba runs
        if port_in_use():
            raise RuntimeError("port 445 is in use: another SMB server runs on this host")
        state = {name: self.root / name for name in ("private", "lock", "state", "cache", "run")}
        for directory in [*state.values(), self.root / "logs", self.root / "ncalrpc"]:
            directory.mkdir(mode=0o755, exist_ok=True)
        self.shares_config.write_text("")
        self.config.write_text(
            "\n".join(
                [
                    "[global]",
                    "server role = standalone server",
                    "interfaces = 127.0.0.1",
                    "bind interfaces only = yes",
                    f"smb ports = {PORT}",
                    f"private dir = {state['private']}",
                    f"lock directory = {state['lock']}",
                    f"state directory = {state['state']}",
                    f"cache directory = {state['cache']}",
                    f"pid directory = {state['run']}",
                    f"ncalrpc dir = {self.root / 'ncalrpc'}",
                    f"log file = {self.root / 'logs' / 'log.%m'}",
                    f"passdb backend = tdbsam:{state['private'] / 'passdb.tdb'}",
                    "disable netbios = yes",
                    "load printers = no",
                    "printcap name = /dev/null",
                    "disable spoolss = yes",
                    "server min protocol = SMB2_10",
                    "map to guest = never",
                    "restrict anonymous = 2",
                    f"include = {self.shares_config}",
                    "",
                ]
            )
        )
        with open(self.root / "smbd.log", "ab") as log:
            self.process = subprocess.Popen(
                [SMBD, "-F", "--no-process-group", "-s", str(self.config), "--debug-stdout"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not port_in_use():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smbd did not start:\n{self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def add_user(self, name: str, password: str) -> None:
        """A Unix user with an SMB password (Azure: the account name and its key)."""
        if name in self.users:
            return
        subprocess.run(
            ["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.users[name] = password
        subprocess.run(
            ["smbpasswd", "-c", str(self.config), "-s", "-a", name],
            input=f"{password}\n{password}\n".encode(),
            check=True,
            capture_output=True,
            timeout=30,
        )

    def add_share(self, name: str, path: Path | str) -> None:
        with self.lock:
            self.shares[name] = Path(path)
            self._write_shares()

    def remove_share(self, name: str) -> None:
        with self.lock:
            self.shares.pop(name, None)
            self._write_shares()

    def _write_shares(self) -> None:
        users = " ".join(sorted(self.users))
        blocks = [
            f"[{name}]\n  path = {path}\n  read only = no\n  valid users = {users}\n"
            "  force user = root\n  create mask = 0644\n  directory mask = 0755\n"
            for name, path in sorted(self.shares.items())
        ]
        temporary = self.shares_config.with_suffix(".tmp")
        temporary.write_text("\n".join(blocks))
        os.replace(temporary, self.shares_config)

    def restart(self) -> None:
        """Stop smbd (every connection drops, as in a server crash) and start it again."""
        self.stop()
        with open(self.root / "smbd.log", "ab") as log:
            self.process = subprocess.Popen(
                [SMBD, "-F", "--no-process-group", "-s", str(self.config), "--debug-stdout"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not port_in_use():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smbd did not start again:\n{self.log()[-2000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self.root / "smbd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # smbd's children (one per connection) end with their parent.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        for name in self.users:
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
        self.users.clear()
        # smbd's connection processes end a moment after their parent and may still write
        # a log line meanwhile: try again briefly rather than leave the directory behind.
        for _ in range(50):
            shutil.rmtree(self.root, ignore_errors=True)
            if not self.root.exists():
                break
            time.sleep(0.1)
        if self._turn is not None:
            os.close(self._turn)  # the next waiting session's turn
            self._turn = None
