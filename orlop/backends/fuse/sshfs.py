"""SSH volumes: a directory on any SSH server, mounted through sshfs.

Each volume is the directory `<path>/<name>` on the server, made at Create and deleted at
Remove by Orlop — through an sshfs mount of `path` itself, so a server that offers only
SFTP (no shell) works, with the same credentials and host key checks as the volume's own
mount. With `share=true` the volume is `path` itself and Remove leaves the server alone.

Credentials: `identity` (a private key file) and/or `password_file`, or the driver's
settings `private_key` / `password` (written to 0600 files, never stored in the database).
The password reaches sshfs on its standard input. Host keys are checked: against the
volume's `known_hosts` file when given, else the driver setting `known_hosts` (the text of
known_hosts lines — how a managed plugin, which sees no host files, gets them), else root's
and the system's known_hosts files.

    drivers:
      orlop-ssh:
        backend: sshfs
        options: {host: files.example.com, user: docker, path: /srv/volumes,
                  identity: /etc/orlop/ssh/id_ed25519, known_hosts: /etc/orlop/ssh/known_hosts}
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import SecretStr

from orlop.backends.base import BackendContext, Check, tool_check
from orlop.backends.fuse.backend import FuseBackend
from orlop.backends.fuse.mounting import FuseMounts, FusePaths, fuse_device_check
from orlop.backends.fuse.options import existing_file, parse_timeout
from orlop.backends.fuse.sshfs_client import SshfsClient
from orlop.backends.fuse.sshfs_remote import SshfsRemote
from orlop.backends.settings import BackendSettings, secret_value
from orlop.core.options import (
    Option,
    OptionSet,
    canonical_bool,
    canonical_int,
    parse_port,
)

_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+\Z")
_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")


def canonical_host(value: str) -> str:
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host and _IPV6_RE.match(host):
        return host
    if not _HOST_RE.match(host):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return host


def canonical_user(value: str) -> str:
    if not _USER_RE.match(value):
        raise ValueError(
            f"{value!r} is not a user name: use letters, digits, '_', '.', '-' "
            "(starting with a letter or '_')"
        )
    return value


def canonical_remote_path(value: str) -> str:
    if any(ord(c) < 32 for c in value) or value.startswith("-"):
        raise ValueError(f"{value!r} is not a usable path: no control characters or leading '-'")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{value!r} must not contain '..'")
    joined = "/".join(parts)
    return ("/" + joined) if value.startswith("/") else joined


class SshfsSettings(BackendSettings):
    """Credentials for the volumes that bring none of their own (`identity`, `password_file`)."""

    private_key: SecretStr | None = None  # the text of an SSH private key
    password: SecretStr | None = None
    known_hosts: str | None = None  # the text of known_hosts lines (public: not a secret)


class SshfsBackend(FuseBackend):
    """sshfs volumes: `SshfsClient` mounts them (sshfs_client.py), `SshfsRemote` makes and
    deletes their directories on the server (sshfs_remote.py)."""

    kind: ClassVar[str] = "sshfs"
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("host", canonical_host, "the SSH server (name or IP address); required"),
            Option("port", canonical_int(parse_port), "the SSH port (default 22)"),
            Option("user", canonical_user, "the user to log in as (default: root)"),
            Option("path", canonical_remote_path, "directory on the server holding volumes"),
            Option("identity", existing_file("SSH private key"), "private key file"),
            Option("password_file", existing_file("password file"), "file holding the password"),
            Option("known_hosts", existing_file("known_hosts file"), "known_hosts file to check"),
            Option("reconnect", canonical_bool, "reconnect after a dropped connection (true)"),
            Option("readonly", canonical_bool, "mount read-only (false)"),
            Option("share", canonical_bool, "mount `path` itself, not <path>/<name> (false)"),
            Option("timeout", parse_timeout, "seconds to connect and mount (default 20)"),
        ]
    )
    settings_model: ClassVar[type[BackendSettings]] = SshfsSettings
    client: SshfsClient
    remote: SshfsRemote

    def __init__(self, context: BackendContext) -> None:
        settings = SshfsSettings.parse(self.kind, context.settings)
        paths = FusePaths.make(context)
        client = SshfsClient(
            paths,
            context.path("known_hosts"),
            private_key=secret_value(settings.private_key) or None,
            password=secret_value(settings.password) or None,
            known_hosts=settings.known_hosts,
        )
        remote = SshfsRemote(paths, context.path("admin"), client)
        super().__init__(context, FuseMounts(paths, client), remote)

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [
            tool_check("sshfs", "sshfs"),
            tool_check("ssh", "openssh-client"),
            tool_check("fusermount3", "fuse3"),
            fuse_device_check(),
        ]
