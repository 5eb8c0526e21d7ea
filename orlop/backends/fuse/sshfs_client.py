"""The sshfs client: the command line that mounts a directory of an SSH server.

Host keys are always checked (StrictHostKeyChecking=yes): against the volume's
`known_hosts` file, else the driver's `known_hosts` setting (written to a file here), else
root's and the system's files. A key comes from the volume's `identity` or the driver's
`private_key` (a 0600 file); a password from `password_file` or the driver's `password`,
and reaches sshfs on its standard input, never its command line.
"""

from __future__ import annotations

import os
from typing import Any

from orlop.backends.base import VolumeRef
from orlop.backends.fuse.mounting import DRAIN_TIMEOUT, FusePaths
from orlop.backends.fuse.secret_files import read_secret, write_secret
from orlop.host.fuse import FuseCommand
from orlop.host.run import which


class SshfsClient:
    name = "sshfs"

    def __init__(
        self,
        paths: FusePaths,
        known_hosts_path: str,
        *,
        private_key: str | None,
        password: str | None,
        known_hosts: str | None,
    ) -> None:
        """`private_key`, `password`, `known_hosts`: the driver's settings (text), if any."""
        self.settings_identity: str | None = None
        if private_key:
            self.settings_identity = write_secret(
                paths.secret_path("identity"), private_key.strip() + "\n"
            )
        self.settings_password = password or None
        self.settings_known_hosts: str | None = None
        if known_hosts:
            self.settings_known_hosts = _write_known_hosts(known_hosts_path, known_hosts)

    # FuseClient ---------------------------------------------------------------------------
    def command(self, volume: VolumeRef, mountpoint: str, run: dict[str, Any]) -> FuseCommand:
        return self.command_for(volume, volume_path(volume), mountpoint)

    def describe(self, volume: VolumeRef) -> str:
        return f"{address(volume)}:{volume_path(volume) or '~'}"

    def drain_timeout(self, volume: VolumeRef) -> float:
        return DRAIN_TIMEOUT

    def before_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        """sshfs writes through: nothing waits in the client once the kernel is idle."""

    def after_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        """No per-mount files: the password went on stdin, keys are the driver's."""

    # the command line -----------------------------------------------------------------------
    def command_for(
        self, volume: VolumeRef, remote_path: str, mountpoint: str, admin: bool = False
    ) -> FuseCommand:
        """sshfs mounting `remote_path` of the volume's server at `mountpoint`; `admin`: the
        private mount of the parent directory for Create and Remove (never read-only)."""
        options = volume.options
        host = options["host"]
        host = f"[{host}]" if ":" in host else host
        timeout = int(float(options.get("timeout", "20")))
        ssh_options = [
            f"Port={options.get('port', '22')}",
            f"ConnectTimeout={max(1, timeout)}",
            "StrictHostKeyChecking=yes",
            # Prefer AES-GCM (hardware-accelerated) over the default ChaCha20; the server
            # may still pick any cipher both sides know.
            "Ciphers=^aes128-gcm@openssh.com",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=3",
            "allow_other",
        ]
        known_hosts = options.get("known_hosts") or self.settings_known_hosts
        if known_hosts:
            ssh_options.append(f"UserKnownHostsFile={known_hosts}")
        identity = options.get("identity") or self.settings_identity
        if identity:
            ssh_options += [f"IdentityFile={identity}", "IdentitiesOnly=yes"]
        password = self._password(options)
        if password is None:
            ssh_options += ["BatchMode=yes", "PasswordAuthentication=no"]
        else:
            ssh_options += ["password_stdin", "NumberOfPasswordPrompts=1"]
        if options.get("reconnect", "true") == "true":
            ssh_options.append("reconnect")
        if options.get("readonly") == "true" and not admin:
            ssh_options.append("ro")
        args = [which("sshfs") or "sshfs", f"{options.get('user', 'root')}@{host}:{remote_path}"]
        args += [mountpoint, "-f"]
        for option in ssh_options:
            args += ["-o", option]
        stdin = None if password is None else (password + "\n").encode()
        return FuseCommand(args, stdin=stdin, secrets=[password] if password else [])

    def _password(self, options: dict[str, str]) -> str | None:
        if "password_file" in options:
            return read_secret(options["password_file"], "password file")
        return self.settings_password


def address(volume: VolumeRef) -> str:
    """user@host:port of the volume's server, for messages."""
    options = volume.options
    host = options["host"]
    host = f"[{host}]" if ":" in host else host
    return f"{options.get('user', 'root')}@{host}:{options.get('port', '22')}"


def volume_path(volume: VolumeRef) -> str:
    """The volume's directory on the server: `<path>/<name>`, or `path` with share=true."""
    base = volume.options.get("path", "")
    if volume.options.get("share") == "true":
        return base
    return f"{base.rstrip('/')}/{volume.name}" if base else volume.name


def _write_known_hosts(path: str, text: str) -> str:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(f"{path}.tmp", "w", encoding="utf-8") as file:
        file.write(text.strip() + "\n")
    os.replace(f"{path}.tmp", path)
    return path
