"""SMB and NFS clients for file shares: which one this host has, and how each is started.

Three ways to mount a share, chosen per volume by `client: auto | kernel | fuse`:

* the kernel's `cifs` (SMB 3.x, through mount.cifs from cifs-utils), credentials in a 0600
  `credentials=` file;
* the kernel's `nfs` (v3 / v4.x, through mount.nfs from nfs-common); NFS needs no password;
* `smbnetfs` (Debian's FUSE SMB client, on libsmbclient) where the kernel lacks cifs — as on
  hosts whose kernel is built without it. It shows a whole network (`<mount>/<host>/<share>`),
  so Orlop mounts it privately and bind-mounts the share's directory at the volume's
  mountpoint. Credentials go into its config file (0600), never on its command line.

Everything here is pure (no I/O beyond reading /proc and /lib/modules): command lines and
file contents, so they can be unit-tested on hosts without the clients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from orlop.core.model import InvalidOption
from orlop.host.fuse import FuseCommand
from orlop.host.run import which

Client = Literal["kernel", "fuse"]
CLIENT_CHOICES = ("auto", "kernel", "fuse")

# smbnetfs: FUSE 2 writes 4 KiB at a time unless asked for big writes; with them a
# sequential write through it went from 16.8 MB/s to 224 MB/s on the test host.
SMBNETFS_MOUNT_OPTIONS = ("allow_other", "big_writes", "max_write=131072")


@dataclass(frozen=True, slots=True)
class SmbTarget:
    """An SMB share (and a directory inside it) with the credentials to mount it."""

    host: str
    share: str
    username: str
    password: str = field(repr=False)
    path: str = ""  # a directory inside the share; "" for its root
    domain: str = ""
    version: str = "3.1.1"  # the kernel client's `vers=`
    encrypt: bool = False  # ask for SMB 3 encryption (Azure wants it outside its regions)

    @property
    def unc(self) -> str:
        tail = f"/{self.path.strip('/')}" if self.path.strip("/") else ""
        return f"//{self.host}/{self.share}{tail}"


@dataclass(frozen=True, slots=True)
class NfsTarget:
    """An NFS export: `host:export`."""

    host: str
    export: str
    version: str = "4.1"  # "3", "4", "4.0", "4.1", "4.2"


@dataclass(frozen=True, slots=True)
class Presentation:
    """How files look through the mount: owner, modes, read-only."""

    uid: str | None = None
    gid: str | None = None
    file_mode: str | None = None  # octal, canonical "0644"
    dir_mode: str | None = None
    readonly: bool = False


def kernel_has(fstype: str) -> tuple[bool, str]:
    """Whether the kernel knows `fstype` now or can load it; and how we know."""
    try:
        with open("/proc/filesystems", encoding="ascii") as table:
            if fstype in {line.split()[-1] for line in table if line.strip()}:
                return True, f"the kernel has {fstype} loaded"
    except OSError:
        pass
    modules = os.path.join("/lib/modules", os.uname().release)
    for listing in ("modules.dep", "modules.builtin"):
        try:
            with open(os.path.join(modules, listing), encoding="utf-8") as lines:
                if any(f"/{fstype}.ko" in line.split(":", 1)[0] for line in lines):
                    return True, f"the kernel can load {fstype} ({listing})"
        except OSError:
            continue
    return False, f"this kernel has no {fstype} filesystem (not in /proc/filesystems or {modules})"


def choose_client(wanted: str, protocol: Literal["smb", "nfs"]) -> tuple[Client, str]:
    """The client to use for `protocol` given the `client` setting, and why.

    Raises InvalidOption when the wanted client cannot work here (the message says what
    to install or set instead)."""
    if wanted not in CLIENT_CHOICES:
        raise InvalidOption(f"client {wanted!r} is not allowed: use auto, kernel or fuse")
    fstype, helper, package = (
        ("nfs", "mount.nfs", "nfs-common")
        if protocol == "nfs"
        else ("cifs", "mount.cifs", "cifs-utils")
    )
    has_kernel, why_kernel = kernel_has(fstype)
    has_helper = which(helper) is not None
    if protocol == "nfs":
        if wanted == "fuse":
            raise InvalidOption("there is no FUSE NFS client: use client kernel (or auto) for NFS")
        if not has_kernel:
            raise InvalidOption(f"NFS needs the kernel's nfs client: {why_kernel}")
        if not has_helper:
            raise InvalidOption(f"NFS needs {helper}: apt-get install {package}")
        return "kernel", f"{why_kernel}, and {helper} is installed"
    has_fuse = which("smbnetfs") is not None
    if wanted == "kernel" or (wanted == "auto" and has_kernel and has_helper):
        if not has_kernel:
            raise InvalidOption(f"client kernel: {why_kernel}; use client fuse (smbnetfs)")
        if not has_helper:
            raise InvalidOption(f"client kernel needs {helper}: apt-get install {package}")
        return "kernel", f"{why_kernel}, and {helper} is installed"
    if not has_fuse:
        raise InvalidOption(
            f"no SMB client on this host: {why_kernel}"
            f"{'' if has_helper else f' (and {helper} is missing)'}, and smbnetfs is not "
            "installed: apt-get install smbnetfs (or cifs-utils with a cifs-capable kernel)"
        )
    if wanted == "fuse":
        return "fuse", "client fuse is configured: smbnetfs"
    reason = why_kernel if not has_kernel else f"{helper} is not installed"
    return "fuse", f"{reason}: smbnetfs (FUSE) is used instead"


def cifs_credentials(target: SmbTarget) -> str:
    """The content of mount.cifs's `credentials=` file (0600)."""
    for value in (target.username, target.password, target.domain):
        if "\n" in value:
            raise InvalidOption("SMB credentials must not contain a line break")
    lines = [f"username={target.username}", f"password={target.password}"]
    if target.domain:
        lines.append(f"domain={target.domain}")
    return "\n".join(lines) + "\n"


def cifs_mount_args(
    target: SmbTarget, mountpoint: str, credentials_file: str, look: Presentation
) -> list[str]:
    options = [
        f"credentials={credentials_file}",
        f"vers={target.version}",
        "serverino",
        "mfsymlinks",  # symlinks as Windows servers (and Azure) can store them
        "cache=strict",
        "nosharesock",  # one TCP connection per volume: one volume's stall is its own
    ]
    if target.encrypt:
        options.append("seal")
    options += _presentation(look, file_key="file_mode", dir_key="dir_mode")
    return ["mount", "-t", "cifs", target.unc, mountpoint, "-o", ",".join(options)]


def nfs_mount_args(target: NfsTarget, mountpoint: str, look: Presentation) -> list[str]:
    version = target.version
    options = [f"vers={version}", "hard", "timeo=600", "retrans=2", "noresvport"]
    if version == "3":
        options.append("nolock")  # no rpc.statd needed; locks stay on this host
    if look.readonly:
        options.append("ro")
    return [
        "mount",
        "-t",
        "nfs",
        f"{target.host}:{target.export}",
        mountpoint,
        "-o",
        ",".join(options),
    ]


def _presentation(look: Presentation, *, file_key: str, dir_key: str) -> list[str]:
    options = []
    if look.uid is not None:
        options.append(f"uid={look.uid}")
    if look.gid is not None:
        options.append(f"gid={look.gid}")
    if look.file_mode is not None:
        options.append(f"{file_key}={look.file_mode}")
    if look.dir_mode is not None:
        options.append(f"{dir_key}={look.dir_mode}")
    if look.readonly:
        options.append("ro")
    return options


def _quoted(value: str, what: str) -> str:
    if any(char in value for char in '"\\\n\r'):
        raise InvalidOption(
            f"the {what} contains a quote, backslash or line break, which smbnetfs's config "
            "cannot hold: use client kernel, or change the credential"
        )
    return f'"{value}"'


def smbnetfs_config(target: SmbTarget, timeout: float) -> str:
    """smbnetfs.conf for one volume (0600: it holds the password)."""
    user = f"{target.domain}/{target.username}" if target.domain else target.username
    resource = f"{target.host}/{target.share}"
    return "\n".join(
        [
            # Only the static share: never browse the network for other hosts.
            'smb_query_browsers "false"',
            'show_hidden_hosts "false"',
            'noexec_attr "true"',
            # A failure is remembered for 0.2 s, not 3: after one (an append, below) the
            # mount answers again at once, and a share made a moment ago is found.
            # (`neg_cache "false"` makes smbnetfs 0.6.3 hang before it mounts.)
            "neg_cache_timeout 200",
            f"smb_timeout {max(1000, int(timeout * 1000))}",
            f"reply_timeout {max(10, int(timeout))}",
            # smbnetfs retries a failed request by restarting its connection child, 2 s
            # apart: one retry survives a server restart; the default 2 stalled a failing
            # write-only append (libsmbclient cannot seek to its end) for 4 s, then 3 s of
            # negative cache: 7 s without the mount. Now ~2.3 s.
            "max_retry_count 1",
            "config_update_period 0",
            f"auth {_quoted(resource, 'share name')} {_quoted(user, 'user name')} "
            f"{_quoted(target.password, 'password')}",
            "",
        ]
    )


def smbnetfs_client_conf(target: SmbTarget) -> str:
    """The libsmbclient smb.conf smbnetfs reads from $HOME/.smb/: SMB 2.1 at least."""
    lines = ["[global]", "client min protocol = SMB2_10", "client max protocol = SMB3"]
    if target.encrypt:
        lines.append("client smb encrypt = desired")
    return "\n".join(lines) + "\n"


def smbnetfs_command(mountpoint: str, home: str, look: Presentation) -> FuseCommand:
    """smbnetfs in the foreground on `mountpoint`, its config under `home`/.smb."""
    options = [f"config={os.path.join(home, '.smb', 'smbnetfs.conf')}", *SMBNETFS_MOUNT_OPTIONS]
    if look.uid is not None:
        options.append(f"uid={look.uid}")
    if look.gid is not None:
        options.append(f"gid={look.gid}")
    umask = fuse_umask(look)
    if umask is not None:
        options.append(f"umask={umask:04o}")
    if look.readonly:
        options.append("ro")
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    args = [which("smbnetfs") or "smbnetfs", mountpoint, "-f", "-o", ",".join(options)]
    return FuseCommand(args, env=env)


def fuse_umask(look: Presentation) -> int | None:
    """FUSE 2 has one umask for files and directories: it keeps what either mode allows."""
    modes = [int(mode, 8) for mode in (look.file_mode, look.dir_mode) if mode is not None]
    if not modes:
        return None
    allowed = 0
    for mode in modes:
        allowed |= mode
    return 0o777 & ~allowed
