"""Socket activation without systemd: bind the sockets here, start `orlop serve` with them.

As systemd does for `orlop.socket`: the sockets are bound and listening before the daemon
starts (a client may connect and send at once; its call waits in the backlog), and they are
handed over as file descriptors 3, 4, … with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID. The
last must be the daemon's own PID, known only in the child: a tiny wrapper sets it, moves
the sockets to 3, 4, … and execs the daemon.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.daemon import OrlopDaemon

# argv[1]: the inherited descriptors, comma-separated; argv[2:]: the command to exec.
_WRAPPER = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def listening(path: str) -> socket.socket:
    """A unix stream socket bound at `path` and listening, as systemd's ListenStream=."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(128)
    return sock


def start_activated(
    daemon: OrlopDaemon, sockets: Mapping[str, socket.socket], env: Mapping[str, str] = {}
) -> subprocess.Popen[bytes]:
    """Start `daemon` (not yet running) socket-activated with `sockets` (FileDescriptorName
    → listening socket, in order); its process, also set as `daemon.process`."""
    fds = [sock.fileno() for sock in sockets.values()]
    command = [sys.executable, "-m", "orlop", "--config", str(daemon.config_path), "serve"]
    environ = {**os.environ, **daemon.env, **env, "LISTEN_FDNAMES": ":".join(sockets)}
    with open(Path(daemon.log_path), "ab") as log:
        daemon.process = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, ",".join(map(str, fds)), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
            pass_fds=fds,
        )
    return daemon.process
