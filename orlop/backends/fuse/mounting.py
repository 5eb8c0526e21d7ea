"""One volume's FUSE mount on this host, top to bottom, for any FUSE client.

A client (sshfs, rclone, smbnetfs) says how to start it and what to do around an
unmount (`FuseClient`); `FuseMounts` owns the mount's life:

* attach: a live mount is reused; a dead or hung one ("Transport endpoint is not
  connected") is unmounted and mounted again, so the next container start gets a working
  mount; a new client gets a deadline and must show up in /proc/self/mountinfo;
* detach: wait until the kernel holds no request for the mount, the client's
  `before_unmount` (an S3 client finishing its uploads), then fusermount3 -u (lazy only
  for a dead mount), wait for the client process to exit, the client's `after_unmount`;
* the client's pid (and facts it adds, e.g. a control port) is kept in `run/<name>`
  until detach; its output goes to `logs/<name>.log`; secrets are 0600 files under
  `secrets/` or reach the client on stdin.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

from orlop.backends.base import BackendContext, Check, VolumeRef
from orlop.backends.fuse.options import timeout_of
from orlop.backends.fuse.secret_files import write_secret
from orlop.core.model import BackendError, Usage
from orlop.host import fuse
from orlop.host.fuse import FuseCommand, MountState
from orlop.host.tree import tree_size
from orlop.ops.counters import mount_repaired

log = logging.getLogger(__name__)

USAGE_WALK_SECONDS = 2.0
DRAIN_TIMEOUT = 120.0


class FuseClient(Protocol):
    """How one kind of FUSE client is started and ended."""

    name: str  # for messages: "sshfs", "rclone", "smbnetfs"

    def command(self, volume: VolumeRef, mountpoint: str, run: dict[str, Any]) -> FuseCommand:
        """The client to start for `volume`; may add facts to `run` (kept until detach)."""

    def describe(self, volume: VolumeRef) -> str:
        """Where the data lives, for messages (no secrets)."""

    def drain_timeout(self, volume: VolumeRef) -> float:
        """How long an unmount waits for the client to finish the work it was given."""

    def before_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        """Called with a live, idle mount before it is unmounted (flush pending writes)."""

    def after_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        """Called once the mount and its client are gone (delete per-mount secrets)."""


@dataclass(frozen=True, slots=True)
class FusePaths:
    """A FUSE driver's directories under its state directory."""

    root: str  # volumes/<name>: the mountpoints
    run_dir: str  # run/<name>: the client's pid and facts, while mounted
    secrets_dir: str  # 0600 files: keys, configs with passwords
    log_dir: str  # logs/<name>.log: the client's output
    driver: str = ""  # the driver these are of: metrics name it

    @classmethod
    def make(cls, context: BackendContext) -> FusePaths:
        paths = cls(
            context.path("volumes"),
            context.path("run"),
            context.path("secrets"),
            context.path("logs"),
            context.driver,
        )
        for directory in (paths.run_dir, paths.secrets_dir, paths.log_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        os.makedirs(paths.root, mode=0o711, exist_ok=True)
        return paths

    def mountpoint(self, name: str) -> str:
        return os.path.join(self.root, name)

    def run_path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def secret_path(self, name: str) -> str:
        return os.path.join(self.secrets_dir, name)


def fuse_device_check() -> Check:
    ok = os.path.exists("/dev/fuse")
    return Check(
        "device /dev/fuse",
        ok,
        "FUSE clients need it" if ok else "missing",
        "modprobe fuse (in a container: --device /dev/fuse --cap-add SYS_ADMIN)",
    )


class FuseMounts:
    """The mounts of one driver's volumes through `client`, at `paths.root/<name>`."""

    def __init__(self, paths: FusePaths, client: FuseClient) -> None:
        self.paths = paths
        self.client = client

    def mountpoint(self, volume: VolumeRef) -> str:
        return self.paths.mountpoint(volume.name)

    def alive(self, volume: VolumeRef) -> bool:
        return fuse.state(self.mountpoint(volume)) is MountState.ALIVE

    def attach(self, volume: VolumeRef) -> str:
        path = self.mountpoint(volume)
        current = fuse.state(path)
        if current is MountState.ALIVE:
            return path
        if current is not MountState.ABSENT:
            log.warning("volume %s: mount is %s; mounting it again", volume.name, current.value)
            mount_repaired(self.paths.driver, volume.name)  # metrics: a FUSE client restart
            self._drop_dead_mount(volume, path)
        self.mount_at(volume, path, self.paths.run_path(volume.name))
        return path

    def mount_at(self, volume: VolumeRef, path: str, run_path: str) -> None:
        """Start the client on `path` and record its pid (and the client's facts) at `run_path`."""
        os.makedirs(path, mode=0o755, exist_ok=True)
        run: dict[str, Any] = {}
        command = self.client.command(volume, path, run)
        pid = fuse.start(
            command,
            path,
            log_path=os.path.join(self.paths.log_dir, f"{os.path.basename(run_path)}.log"),
            timeout=timeout_of(volume),
            what=f"{self.client.name} mount of {self.client.describe(volume)}",
        )
        run["pid"] = pid
        write_secret(run_path, json.dumps(run))

    def detach(self, volume: VolumeRef) -> None:
        self.unmount_at(volume, self.mountpoint(volume), self.paths.run_path(volume.name))

    def unmount_at(self, volume: VolumeRef, path: str, run_path: str) -> None:
        run = _load_run(run_path)
        current = fuse.state(path)
        if current is MountState.ALIVE:
            # Closes reach the client asynchronously (FUSE release): let them all arrive.
            limit = self.client.drain_timeout(volume)
            if not fuse.wait_idle(path, limit):
                raise BackendError(
                    f"volume {volume.name}: the {self.client.name} client still has requests "
                    f"pending after {limit:g}s; not unmounting, so nothing is lost"
                )
            self.client.before_unmount(volume, run)
        if current is not MountState.ABSENT:
            fuse.unmount(path, pid=run.get("pid"))
        elif run.get("pid"):
            fuse.kill(int(run["pid"]), path)
        self.client.after_unmount(volume, run)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_path)

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        path = self.mountpoint(volume)
        return path in mounted and fuse.state(path) is MountState.ALIVE

    def walked_usage(self, volume: VolumeRef) -> Usage | None:
        """What the live mount holds, walked within a time budget; None if not mounted."""
        path = self.mountpoint(volume)
        if fuse.state(path) is not MountState.ALIVE:
            return None
        used = tree_size(path, USAGE_WALK_SECONDS, allocated=False)
        return None if used is None else Usage(used=used)

    def forget(self, volume: VolumeRef) -> None:
        """Once unmounted: this host's leftovers of a volume (its mountpoint, its log)."""
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.mountpoint(volume))
        for name in os.listdir(self.paths.log_dir):
            if name == f"{volume.name}.log":
                os.unlink(os.path.join(self.paths.log_dir, name))

    def _drop_dead_mount(self, volume: VolumeRef, path: str) -> None:
        run_path = self.paths.run_path(volume.name)
        run = _load_run(run_path)
        fuse.unmount(path, pid=None)
        if run.get("pid"):
            fuse.kill(int(run["pid"]), path)
        self.client.after_unmount(volume, run)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_path)


def _load_run(run_path: str) -> dict[str, Any]:
    try:
        with open(run_path, encoding="utf-8") as file:
            loaded = json.load(file)
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
