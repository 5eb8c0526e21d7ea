"""Mount a share, on any host, the same for every provider.

* attach: a live mount is reused; a dead or stale one (a client that died, a server that
  went away: ENOTCONN, EIO, ESTALE, or a stat that hangs) is unmounted and mounted again,
  so the next container start gets a working mount;
* kernel client: `mount -t cifs` with a 0600 credentials file that exists only while
  mount.cifs reads it, or `mount -t nfs`;
* FUSE client (smbnetfs): its own mount under `clients/<name>` (through the FUSE layer's
  FuseMounts), a probe of the share that turns a refused login, a missing share or an
  unreachable server into a clear error, then a bind mount of `<host>/<share>[/<dir>]` at
  the volume's mountpoint; its config (with the password) is 0600 under `secrets/` and
  deleted once the client is gone;
* prove: mount once and unmount, so a wrong key or an unreachable server fails
  `docker volume create`, not the first container.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import threading
from typing import Any, Literal

from orlop.backends.base import Check, VolumeRef
from orlop.backends.fuse.mounting import DRAIN_TIMEOUT, FuseMounts, FusePaths
from orlop.backends.fuse.options import timeout_of
from orlop.backends.fuse.secret_files import write_secret
from orlop.backends.share import clients
from orlop.backends.share.clients import NfsTarget, Presentation, SmbTarget
from orlop.backends.share.provider import ShareProvider, Target, target_text
from orlop.core.model import BackendError, InvalidOption, Usage
from orlop.host import fuse, mounts
from orlop.host.fuse import FuseCommand, MountState
from orlop.host.run import CommandError, run
from orlop.ops.counters import mount_repaired

log = logging.getLogger(__name__)


def presentation(volume: VolumeRef) -> Presentation:
    """How the volume's files look through its mount, from its options."""
    options = volume.options
    return Presentation(
        uid=options.get("uid"),
        gid=options.get("gid"),
        file_mode=options.get("file_mode"),
        dir_mode=options.get("dir_mode"),
        readonly=options.get("readonly") == "true",
    )


class SmbnetfsClient:
    """smbnetfs as a FuseClient: the whole SMB network of one share's server, privately."""

    name = "smbnetfs"

    def __init__(self, paths: FusePaths, provider: ShareProvider) -> None:
        self.paths = paths
        self.provider = provider

    def home(self, name: str) -> str:
        """smbnetfs's $HOME: its config under .smb/ (0600, with the password)."""
        return self.paths.secret_path(f"{name}.home")

    def command(self, volume: VolumeRef, mountpoint: str, run: dict[str, Any]) -> FuseCommand:
        target = self.provider.target(volume)
        assert isinstance(target, SmbTarget)
        home = self.home(volume.name)
        smb = os.path.join(home, ".smb")
        write_secret(
            os.path.join(smb, "smbnetfs.conf"),
            clients.smbnetfs_config(target, timeout_of(volume)),
        )
        write_secret(os.path.join(smb, "smb.conf"), clients.smbnetfs_client_conf(target))
        command = clients.smbnetfs_command(mountpoint, home, presentation(volume))
        return dataclasses.replace(command, secrets=[target.password])

    def describe(self, volume: VolumeRef) -> str:
        return target_text(self.provider.target(volume))

    def drain_timeout(self, volume: VolumeRef) -> float:
        return DRAIN_TIMEOUT

    def before_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        """smbnetfs writes through to the server: nothing waits once the kernel is idle."""

    def after_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        shutil.rmtree(self.home(volume.name), ignore_errors=True)


class ShareMounts:
    """The mounts of one driver's shares at `paths.root/<name>`, by the client each needs."""

    def __init__(
        self, paths: FusePaths, clients_dir: str, provider: ShareProvider, client: str
    ) -> None:
        """`client`: the driver's `client` setting (auto, kernel, fuse) for SMB shares."""
        self.paths = paths
        self.clients_dir = clients_dir
        self.provider = provider
        self.client_setting = client
        self.fuse = FuseMounts(paths, SmbnetfsClient(paths, provider))
        os.makedirs(self.clients_dir, mode=0o700, exist_ok=True)

    def mountpoint(self, volume: VolumeRef) -> str:
        return self.paths.mountpoint(volume.name)

    def client_for(self, volume: VolumeRef, target: Target) -> tuple[clients.Client, str]:
        protocol: Literal["smb", "nfs"] = "nfs" if isinstance(target, NfsTarget) else "smb"
        # The driver's `client` setting picks the SMB client; NFS has only the kernel's.
        default = self.client_setting if protocol == "smb" else "auto"
        wanted = volume.options.get("client", default)
        return clients.choose_client(wanted, protocol)

    def attach(self, volume: VolumeRef) -> str:
        path = self.mountpoint(volume)
        current = fuse.state(path)
        if current is MountState.ALIVE:
            return path
        if current is not MountState.ABSENT:
            log.warning("volume %s: mount is %s; mounting it again", volume.name, current.value)
            mount_repaired(self.paths.driver, volume.name)  # metrics: a client restart
        self.detach(volume)  # also a stale mount, and a FUSE client left without its bind
        target = self.provider.target(volume)
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
        run_path = self.paths.run_path(volume.name)
        if mounts.mount_at(client_dir) is not None or os.path.exists(run_path):
            self.fuse.unmount_at(volume, client_dir, run_path)

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        return self.fuse.is_attached(volume, mounted)

    def walked_usage(self, volume: VolumeRef) -> Usage | None:
        return self.fuse.walked_usage(volume)

    def prove(self, volume: VolumeRef) -> None:
        """Mount and unmount once: a wrong key or an unreachable server fails Create."""
        try:
            self.attach(volume)
        finally:
            self.detach(volume)

    def remove_local(self, volume: VolumeRef) -> None:
        """Forget this host's leftovers of a volume (mounts, mountpoint, client, log)."""
        self.detach(volume)
        self.fuse.forget(volume)
        with contextlib.suppress(OSError):
            os.rmdir(self._client_dir(volume.name))

    # mounting -------------------------------------------------------------------------------
    def _mount_kernel(self, volume: VolumeRef, target: Target, path: str) -> None:
        look = presentation(volume)
        timeout = timeout_of(volume) + 30
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
            self.paths.secret_path(f"{volume.name}.credentials"), clients.cifs_credentials(target)
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
        run_path = self.paths.run_path(volume.name)
        self.fuse.mount_at(volume, client_dir, run_path)
        try:
            share_dir = os.path.join(client_dir, target.host, target.share, target.path.strip("/"))
            _probe_share(share_dir.rstrip("/"), target, timeout_of(volume))
            options = ["bind", "ro"] if volume.options.get("readonly") == "true" else ["bind"]
            mounts.mount(share_dir, path, options=options, timeout=timeout_of(volume) + 10)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fuse.unmount_at(volume, client_dir, run_path)
            raise

    def _client_dir(self, name: str) -> str:
        return os.path.join(self.clients_dir, name)


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
