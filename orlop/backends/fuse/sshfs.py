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

import contextlib
import os
import re
import shutil
from typing import Any, ClassVar

from pydantic import SecretStr

from orlop.backends.base import BackendContext, Check, VolumeRef, tool_check
from orlop.backends.fuse.layer import (
    FuseBackend,
    existing_file,
    fuse_device_check,
    parse_timeout,
    read_secret,
    write_secret,
)
from orlop.backends.settings import BackendSettings, secret_value
from orlop.core.model import BackendError, InvalidOption
from orlop.core.options import (
    Option,
    OptionSet,
    canonical_bool,
    canonical_int,
    parse_port,
)
from orlop.host import fuse, mounts
from orlop.host.fuse import FuseCommand
from orlop.host.run import which

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
    kind: ClassVar[str] = "sshfs"
    client_name = "sshfs"
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

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        settings = SshfsSettings.parse(self.kind, context.settings)
        self.settings_identity: str | None = None
        key = secret_value(settings.private_key)
        if key:
            self.settings_identity = write_secret(self.secret_path("identity"), key.strip() + "\n")
        self.settings_password = secret_value(settings.password) or None
        self.settings_known_hosts: str | None = None
        if settings.known_hosts:
            self.settings_known_hosts = self._write_known_hosts(settings.known_hosts)
        self.admin_root = context.path("admin")
        os.makedirs(self.admin_root, mode=0o700, exist_ok=True)

    def _write_known_hosts(self, text: str) -> str:
        path = self.context.path("known_hosts")
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(f"{path}.tmp", "w", encoding="utf-8") as file:
            file.write(text.strip() + "\n")
        os.replace(f"{path}.tmp", path)
        return path

    # Backend protocol -------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        # No options at all is Docker repeating a Create of an existing volume; a new one
        # without host is refused by create().
        if options and "host" not in options:
            raise InvalidOption(
                "option host is required: the SSH server that stores the volumes "
                "(set it per volume or in the driver's options)"
            )
        if options.get("share") == "true" and not options.get("path"):
            raise InvalidOption("share=true needs option path: the directory to share")

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        self.validate(volume.name, volume.options or {"": ""})
        # Mount the parent directory once: proves host, credentials and host key now (a
        # bad one fails the Create, not a container start) and makes the volume directory.
        with self._parent_mounted(volume) as parent:
            if volume.options.get("share") != "true":
                target = os.path.join(parent, volume.name)
                mounted = mounts.mount_at(parent)
                try:
                    os.makedirs(target, mode=0o755, exist_ok=True)
                except OSError as error:
                    raise BackendError(
                        f"cannot make directory {self._volume_path(volume)} on "
                        f"{self._address(volume)}: {error.strerror}"
                    ) from None
                still = mounts.mount_at(parent)
                if mounted is None or still is None or still.mount_id != mounted.mount_id:
                    with contextlib.suppress(OSError):
                        os.rmdir(target)  # made underneath, on this host: not the volume
                    raise BackendError(
                        f"the sshfs connection to {self._address(volume)} ended while the "
                        "volume's directory was being made; see the driver's admin log"
                    )
        return {"remote": self.describe_remote(volume)}

    def remove(self, volume: VolumeRef) -> None:
        self.remove_local(volume)
        if not volume.record or volume.options.get("share") == "true":
            # A Create that did not finish made at most an empty directory, which may be
            # another host's volume of the same name; a shared directory is not ours.
            return
        with self._parent_mounted(volume) as parent:
            target = os.path.join(parent, volume.name)
            if os.path.lexists(target):
                _remove_tree(target)
            if os.path.lexists(target):
                raise BackendError(
                    f"could not delete {self._volume_path(volume)} on {self._address(volume)}"
                )

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        return {"remote": self.describe_remote(volume)}

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [
            tool_check("sshfs", "sshfs"),
            tool_check("ssh", "openssh-client"),
            tool_check("fusermount3", "fuse3"),
            fuse_device_check(),
        ]

    # FuseBackend hooks ------------------------------------------------------------------
    def describe_remote(self, volume: VolumeRef) -> str:
        return f"{self._address(volume)}:{self._volume_path(volume) or '~'}"

    def client_command(
        self, volume: VolumeRef, mountpoint: str, run: dict[str, Any]
    ) -> FuseCommand:
        return self._command(volume, self._volume_path(volume), mountpoint)

    # helpers ----------------------------------------------------------------------------
    def _address(self, volume: VolumeRef) -> str:
        options = volume.options
        host = options["host"]
        host = f"[{host}]" if ":" in host else host
        return f"{options.get('user', 'root')}@{host}:{options.get('port', '22')}"

    @staticmethod
    def _volume_path(volume: VolumeRef) -> str:
        base = volume.options.get("path", "")
        if volume.options.get("share") == "true":
            return base
        return f"{base.rstrip('/')}/{volume.name}" if base else volume.name

    def _command(
        self, volume: VolumeRef, remote_path: str, mountpoint: str, admin: bool = False
    ) -> FuseCommand:
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

    @contextlib.contextmanager
    def _parent_mounted(self, volume: VolumeRef) -> Any:
        """Mount the volume's parent directory (`path`) privately for Create and Remove."""
        parent = os.path.join(self.admin_root, volume.name)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        fuse.unmount(parent, pid=None)  # a leftover of a crash
        command = self._command(volume, volume.options.get("path", ""), parent, admin=True)
        pid = fuse.start(
            command,
            parent,
            log_path=os.path.join(self.log_dir, f"{volume.name}.admin.log"),
            timeout=self.timeout(volume),
            what=f"sshfs connection to {self._address(volume)}",
        )
        try:
            yield parent
        finally:
            fuse.unmount(parent, pid=pid)
            with contextlib.suppress(OSError):
                os.rmdir(parent)


def _remove_tree(path: str) -> None:
    def retry_writable(function: Any, target: str, _error: Any) -> None:
        # A read-only directory (chmod 555 by a container) cannot lose entries: open it up.
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            function(target)

    shutil.rmtree(path, onerror=retry_writable)
