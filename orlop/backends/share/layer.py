"""The file-share layer: mount a share made through a storage system's API, on any host.

A provider (Azure Files, PowerScale) makes and deletes the share with a quota, and says
where it is (`target`: an SMB share with credentials, or an NFS export). This layer mounts
it, top to bottom, the same for every provider:

* attach: a live mount is reused; a dead or stale one (a client that died, a server that
  went away: ENOTCONN, EIO, ESTALE, or a stat that hangs) is unmounted and mounted again,
  so the next container start gets a working mount;
* kernel client: `mount -t cifs` with a 0600 credentials file that exists only while
  mount.cifs reads it, or `mount -t nfs`;
* FUSE client (smbnetfs): its own mount under `clients/<name>`, a probe of the share that
  turns a refused login, a missing share or an unreachable server into a clear error, then
  a bind mount of `<host>/<share>[/<dir>]` at the volume's mountpoint; its config (with the
  password) is 0600 under `secrets/` and deleted once the client is gone;
* Create proves the share now: it is mounted once and unmounted, so a wrong key or an
  unreachable server fails `docker volume create`, not the first container.

Shares are `global`: many hosts mount one at once, with no attach, preemption or format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef, tool_check
from orlop.backends.fuse.layer import FuseBackend, fuse_device_check, write_secret
from orlop.backends.settings import BackendSettings
from orlop.backends.share import clients
from orlop.backends.share.clients import NfsTarget, Presentation, SmbTarget
from orlop.core.model import BackendError, InvalidOption
from orlop.core.options import Option, canonical_bool, canonical_int, canonical_mode, one_of
from orlop.core.options import parse_id as _parse_id
from orlop.host import fuse, mounts
from orlop.host.fuse import FuseCommand, MountState
from orlop.host.run import CommandError, run
from orlop.ops.counters import mount_repaired

log = logging.getLogger(__name__)

Target = SmbTarget | NfsTarget


class ShareSettings(BackendSettings):
    """Settings every share driver has."""

    smb_host: str | None = None  # the SMB server to mount (default: the provider's)
    client: Literal["auto", "kernel", "fuse"] = "auto"


def presentation_options() -> list[Option]:
    """Options every share driver takes for how its files look, and which client mounts it.

    They say how this host mounts the share, not what the share is (identity=False): a host
    that adopted a share another host made may give its own."""
    return [
        host_option("uid", canonical_int(_parse_id), "owner of every file (the mount's uid=)"),
        host_option("gid", canonical_int(_parse_id), "group of every file (the mount's gid=)"),
        host_option("file_mode", canonical_mode, "permissions of files, octal (0755)"),
        host_option("dir_mode", canonical_mode, "permissions of directories, octal (0755)"),
        host_option("readonly", canonical_bool, "mount read-only (false)"),
        host_option("client", one_of(*clients.CLIENT_CHOICES), "auto, kernel or fuse (smbnetfs)"),
    ]


def host_option(name: str, canonical: Callable[[str], str], help: str) -> Option:
    """An option saying how this host uses a share (mount, remove), not what it is."""
    return Option(name, canonical, help, identity=False)


class ShareBackend(FuseBackend):
    """Base of share providers; subclasses set `kind`, `options`, `settings_model` and
    implement create/remove, `target`, and usage."""

    capabilities = Capabilities(scope="global", resize=True, quota=True)
    client_name = "smbnetfs"
    settings_model: ClassVar[type[ShareSettings]] = ShareSettings

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.settings = self.settings_model.parse(self.kind, context.settings)
        self.clients_dir = context.path("clients")
        os.makedirs(self.clients_dir, mode=0o700, exist_ok=True)

    # hooks for providers ------------------------------------------------------------------
    def target(self, volume: VolumeRef) -> Target:
        """Where the volume's data is and how to log in; from options and record, no I/O."""
        raise NotImplementedError

    def presentation(self, volume: VolumeRef) -> Presentation:
        options = volume.options
        return Presentation(
            uid=options.get("uid"),
            gid=options.get("gid"),
            file_mode=options.get("file_mode"),
            dir_mode=options.get("dir_mode"),
            readonly=options.get("readonly") == "true",
        )

    # choice of client ---------------------------------------------------------------------
    def client_for(self, volume: VolumeRef, target: Target) -> tuple[clients.Client, str]:
        protocol: Literal["smb", "nfs"] = "nfs" if isinstance(target, NfsTarget) else "smb"
        # The driver's `client` setting picks the SMB client; NFS has only the kernel's.
        default = self.settings.client if protocol == "smb" else "auto"
        wanted = volume.options.get("client", default)
        return clients.choose_client(wanted, protocol)

    # Backend protocol ---------------------------------------------------------------------
    def attach(self, volume: VolumeRef) -> str:
        path = self.mountpoint(volume)
        current = fuse.state(path)
        if current is MountState.ALIVE:
            return path
        if current is not MountState.ABSENT:
            log.warning("volume %s: mount is %s; mounting it again", volume.name, current.value)
            mount_repaired(self.context.driver, volume.name)  # metrics: a client restart
        self.detach(volume)  # also a stale mount, and a FUSE client left without its bind
        target = self.target(volume)
        client, why = self.client_for(volume, target)
        log.debug("volume %s: %s client (%s)", volume.name, client, why)
        os.makedirs(path, mode=0o755, exist_ok=True)
        if client == "kernel":
            self._mount_kernel(volume, target, path)
        else:
            assert isinstance(target, SmbTarget)
            self._mount_fuse(volume, target, path)
        return path

    def detach(self, volume: VolumeRef) -> None:
        path = self.mountpoint(volume)
        if mounts.mount_at(path) is not None:
            alive = fuse.state(path) is MountState.ALIVE
            try:
                mounts.unmount(path, lazy_if_busy=not alive)
            except CommandError as error:
                raise BackendError(f"volume {volume.name}: could not unmount: {error}") from None
        client_dir = self._client_dir(volume.name)
        if mounts.mount_at(client_dir) is not None or os.path.exists(self.run_path(volume.name)):
            self.unmount_at(volume, client_dir, self.run_path(volume.name))

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        path = self.mountpoint(volume)
        return path in mounted and fuse.state(path) is MountState.ALIVE

    def remove_local(self, volume: VolumeRef) -> None:
        super().remove_local(volume)
        with contextlib.suppress(OSError):
            os.rmdir(self._client_dir(volume.name))

    def prove(self, volume: VolumeRef) -> None:
        """Mount and unmount once: a wrong key or an unreachable server fails Create."""
        try:
            self.attach(volume)
        finally:
            self.detach(volume)

    def describe_remote(self, volume: VolumeRef) -> str:
        target = self.target(volume)
        if isinstance(target, NfsTarget):
            return f"{target.host}:{target.export}"
        return target.unc

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [smb_client_check(), tool_check("smbnetfs", "smbnetfs"), fuse_device_check()]

    # the FUSE client (FuseBackend hooks) ----------------------------------------------------
    def client_command(
        self, volume: VolumeRef, mountpoint: str, run: dict[str, Any]
    ) -> FuseCommand:
        target = self.target(volume)
        assert isinstance(target, SmbTarget)
        home = self._home(volume.name)
        smb = os.path.join(home, ".smb")
        write_secret(
            os.path.join(smb, "smbnetfs.conf"),
            clients.smbnetfs_config(target, self.timeout(volume)),
        )
        write_secret(os.path.join(smb, "smb.conf"), clients.smbnetfs_client_conf(target))
        command = clients.smbnetfs_command(mountpoint, home, self.presentation(volume))
        return dataclasses.replace(command, secrets=[target.password])

    def after_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        shutil.rmtree(self._home(volume.name), ignore_errors=True)

    # mounting -------------------------------------------------------------------------------
    def _mount_kernel(self, volume: VolumeRef, target: Target, path: str) -> None:
        look = self.presentation(volume)
        timeout = self.timeout(volume) + 30
        if isinstance(target, NfsTarget):
            try:
                run(clients.nfs_mount_args(target, path, look), timeout=timeout)
            except CommandError as error:
                raise BackendError(
                    f"mounting NFS export {target.host}:{target.export} failed: "
                    f"{error.stderr or error}"
                ) from None
            return
        credentials = write_secret(
            self.secret_path(f"{volume.name}.credentials"), clients.cifs_credentials(target)
        )
        try:
            run(
                clients.cifs_mount_args(target, path, credentials, look),
                timeout=timeout,
                redact=[target.password],
            )
        except CommandError as error:
            raise BackendError(
                f"mounting SMB share {target.unc} as {target.username} failed: "
                f"{error.stderr or error}"
            ) from None
        finally:
            # The kernel keeps what it needs to reconnect; the file is not needed after.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(credentials)

    def _mount_fuse(self, volume: VolumeRef, target: SmbTarget, path: str) -> None:
        client_dir = self._client_dir(volume.name)
        run_path = self.run_path(volume.name)
        self.mount_at(volume, client_dir, run_path)
        try:
            share_dir = os.path.join(client_dir, target.host, target.share, target.path.strip("/"))
            _probe_share(share_dir.rstrip("/"), target, self.timeout(volume))
            options = ["bind", "ro"] if volume.options.get("readonly") == "true" else ["bind"]
            mounts.mount(share_dir, path, options=options, timeout=self.timeout(volume) + 10)
        except BaseException:
            with contextlib.suppress(Exception):
                self.unmount_at(volume, client_dir, run_path)
            raise

    # helpers ----------------------------------------------------------------------------------
    def _client_dir(self, name: str) -> str:
        return os.path.join(self.clients_dir, name)

    def _home(self, name: str) -> str:
        return self.secret_path(f"{name}.home")


def _probe_share(path: str, target: SmbTarget, timeout: float) -> None:
    """List the share's directory through smbnetfs; say in words why it cannot be used."""
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            os.listdir(path)
            outcome.append(None)
        except OSError as error:
            outcome.append(error)

    thread = threading.Thread(target=probe, name=f"probe {path}", daemon=True)
    thread.start()
    thread.join(timeout)
    where = f"SMB share {target.unc}"
    if not outcome:
        raise BackendError(f"{where} did not answer within {timeout:g}s (unreachable server?)")
    error = outcome[0]
    if error is None:
        return
    assert isinstance(error, OSError)
    if error.errno in (errno.EACCES, errno.EPERM):
        raise BackendError(
            f"the SMB server {target.host} refused the login of {target.username} to {where}: "
            "wrong key or password, or no access to the share"
        )
    if error.errno == errno.ENOENT:
        raise BackendError(f"{where} does not exist on {target.host}")
    raise BackendError(
        f"cannot reach {where} (SMB, port 445): {error.strerror or error}; "
        "check smb_host and that the server is reachable"
    )


def smb_client_check() -> Check:
    """Doctor: which SMB client `client: auto` picks on this host, and why."""
    try:
        client, why = clients.choose_client("auto", "smb")
    except InvalidOption as error:
        return Check("SMB client", False, str(error), "apt-get install smbnetfs (or cifs-utils)")
    label = "kernel cifs" if client == "kernel" else "smbnetfs (FUSE)"
    return Check("SMB client (client: auto)", True, f"{label}: {why}")


def nfs_client_check() -> Check:
    """Doctor: can this host mount NFS exports (needed only for protocol nfs)?"""
    try:
        _client, why = clients.choose_client("auto", "nfs")
    except InvalidOption as error:
        return Check(
            "NFS client (for protocol nfs)",
            False,
            str(error),
            "apt-get install nfs-common, on a kernel with nfs; or use protocol smb",
        )
    return Check("NFS client (for protocol nfs)", True, f"kernel nfs: {why}")
