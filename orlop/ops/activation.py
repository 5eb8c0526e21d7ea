"""systemd socket activation: serve on the sockets systemd bound before Orlop started.

With `orlop.socket`, systemd listens on every driver socket from early boot, so dockerd finds
`/run/docker/plugins/<driver>.sock` at once and its calls wait in the socket's backlog until
the daemon takes them. systemd hands the sockets over as file descriptors 3, 4, … with
`LISTEN_FDS` (how many), `LISTEN_PID` (for which process) and `LISTEN_FDNAMES` (their
`FileDescriptorName=`, colon-separated): the sd_listen_fds(3) protocol, a few lines here.

A socket is matched to a driver by its name (the driver's name; `admin` for the admin
socket), else by the path it is bound to. The variables are removed from the environment
once read, so no process Orlop starts (a FUSE client) takes the sockets for its own.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from orlop.core.model import ConfigError

log = logging.getLogger(__name__)

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START
ADMIN_NAME = "admin"  # FileDescriptorName= of the admin socket, should systemd bind it too
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class Passed:
    """One socket systemd passed: its FileDescriptorName= and the socket itself."""

    name: str
    socket: socket.socket

    @property
    def path(self) -> str:
        """The filesystem path a unix socket is bound to ("" for any other)."""
        address = self.socket.getsockname() if self.socket.family == socket.AF_UNIX else ""
        return address if isinstance(address, str) and address.startswith("/") else ""


def listen_fds(environ: MutableMapping[str, str] | None = None) -> list[Passed]:
    """The sockets systemd passed to this process, in order; none when not socket-activated
    (or activated for another process: LISTEN_PID names the one they are meant for)."""
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    names = env.get("LISTEN_FDNAMES", "").split(":")
    for variable in _VARIABLES:
        env.pop(variable, None)
    if not pid or not count:
        return []
    if pid != str(os.getpid()):
        log.warning("LISTEN_FDS is meant for process %s, not this one (%d)", pid, os.getpid())
        return []
    if not count.isdigit():
        raise ConfigError(f"LISTEN_FDS must be a number of file descriptors, not {count!r}")
    passed = []
    for index in range(int(count)):
        fd = LISTEN_FDS_START + index
        os.set_inheritable(fd, False)
        name = names[index] if index < len(names) and names[index] else "unknown"
        passed.append(Passed(name, socket.socket(fileno=fd)))
    return passed


def sockets_by_path(
    passed: list[Passed], drivers: Mapping[str, str], admin: str
) -> dict[str, socket.socket]:
    """Path → passed socket for the daemon's servers. `drivers` maps each driver's name to
    its socket path, `admin` is the admin socket's. A socket for no configured driver is
    closed here (systemd keeps its own); one that cannot serve a driver stops the daemon."""
    wanted = {**drivers, ADMIN_NAME: admin}
    by_path = {path: name for name, path in wanted.items()}
    taken: dict[str, socket.socket] = {}
    for fd in passed:
        name = fd.name if fd.name in wanted else by_path.get(fd.path, "")
        if not name:
            log.warning(
                "systemd passed socket %r (%s) for no configured driver (drivers: %s); "
                "remove its ListenStream= from orlop.socket or configure the driver",
                fd.name,
                fd.path or "not a unix socket path",
                ", ".join(sorted(drivers)) or "none",
            )
            fd.socket.close()
            continue
        _check(fd, name, wanted[name])
        if wanted[name] in taken:
            raise ConfigError(f"systemd passed two sockets for {name}: give each its own name")
        taken[wanted[name]] = fd.socket
        log.info("%s: serving on the socket systemd passed (%s)", name, fd.path)
    return taken


def _check(fd: Passed, name: str, path: str) -> None:
    if fd.socket.family != socket.AF_UNIX or fd.socket.type != socket.SOCK_STREAM:
        raise ConfigError(
            f"systemd passed socket {fd.name!r} for {name}, but it is not a unix stream socket: "
            f"in orlop.socket, use ListenStream={path}"
        )
    if fd.path != path:
        raise ConfigError(
            f"systemd passed socket {fd.name!r} bound to {fd.path or 'no path'}, but {name} "
            f"serves on {path} (plugin_dir, admin_socket): make ListenStream= in orlop.socket "
            "and Orlop's configuration name the same path"
        )
