"""The shared layer of every FUSE-mounted network backend (sshfs, S3 through rclone).

A subclass says how to start its client (`client_command`), how to create and delete the
remote side, and what must happen before an unmount (an S3 client finishing its uploads).
This layer owns the lifecycle of one volume's mount, top to bottom:

* attach: a live mount is reused; a dead or hung one ("Transport endpoint is not
  connected") is unmounted and mounted again, so the next container start gets a working
  mount; a new client gets a deadline and must show up in /proc/self/mountinfo;
* detach: the backend's pre-unmount step, then fusermount3 -u (lazy only for a dead mount),
  then wait for the client process to exit;
* secrets: written to 0600 files under the driver's `secrets/` directory, or handed to the
  client on stdin; the store keeps only options that name such files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef
from orlop.core.model import BackendError, InvalidOption, Usage
from orlop.host import fuse
from orlop.host.fuse import FuseCommand, MountState
from orlop.host.tree import tree_size
from orlop.ops.counters import mount_repaired

log = logging.getLogger(__name__)

USAGE_WALK_SECONDS = 2.0
DEFAULT_TIMEOUT = 20.0
DRAIN_TIMEOUT = 120.0


def fuse_device_check() -> Check:
    ok = os.path.exists("/dev/fuse")
    return Check(
        "device /dev/fuse",
        ok,
        "FUSE clients need it" if ok else "missing",
        "modprobe fuse (in a container: --device /dev/fuse --cap-add SYS_ADMIN)",
    )


def parse_timeout(value: str) -> str:
    """Seconds, 1 to 3600 (a whole or decimal number)."""
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds: use e.g. 20 or 2.5") from None
    if not 1 <= seconds <= 3600:
        raise ValueError(f"{value!r} is out of range: use 1 to 3600 seconds")
    return f"{seconds:g}"


def existing_file(what: str) -> Any:
    """A canonicaliser for options that name a file on this host (a key, a password)."""

    def check(value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError(f"{value!r} must be an absolute path to the {what}")
        if not os.path.isfile(value) or not os.access(value, os.R_OK):
            raise ValueError(f"{value!r} is not a readable file (the {what})")
        return value

    return check


def write_secret(path: str, content: str) -> str:
    """Write `content` to `path` with mode 0600 from the first byte; return the path."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(content)
    os.replace(temporary, path)
    return path


def read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n")
    except OSError as error:
        raise InvalidOption(f"cannot read the {what} {path}: {error.strerror}") from None


class FuseBackend:
    """Base of FUSE network backends; subclasses set `kind`, `options` and the hooks."""

    kind: ClassVar[str]
    capabilities = Capabilities(scope="global")
    client_name: ClassVar[str] = "FUSE client"

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.root = context.path("volumes")
        self.run_dir = context.path("run")
        self.secrets_dir = context.path("secrets")
        self.log_dir = context.path("logs")
        for directory in (self.run_dir, self.secrets_dir, self.log_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        os.makedirs(self.root, mode=0o711, exist_ok=True)

    # hooks for subclasses ---------------------------------------------------------------
    def client_command(
        self, volume: VolumeRef, mountpoint: str, run: dict[str, Any]
    ) -> FuseCommand:
        """The client to start for `volume`; may add facts to `run` (kept until detach)."""
        raise NotImplementedError

    def describe_remote(self, volume: VolumeRef) -> str:
        """Where the data lives, for messages (no secrets)."""
        raise NotImplementedError

    def before_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        """Called with a live mount before it is unmounted (flush pending writes)."""

    def after_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        """Called once the mount and its client are gone (delete per-mount secrets)."""

    def timeout(self, volume: VolumeRef) -> float:
        return float(volume.options.get("timeout", DEFAULT_TIMEOUT))

    def drain_timeout(self, volume: VolumeRef) -> float:
        """How long an unmount waits for the client to finish the work it was given."""
        return DRAIN_TIMEOUT

    # Backend protocol -------------------------------------------------------------------
    def mountpoint(self, volume: VolumeRef) -> str:
        return os.path.join(self.root, volume.name)

    def attach(self, volume: VolumeRef) -> str:
        path = self.mountpoint(volume)
        current = fuse.state(path)
        if current is MountState.ALIVE:
            return path
        if current is not MountState.ABSENT:
            log.warning("volume %s: mount is %s; mounting it again", volume.name, current.value)
            mount_repaired(self.context.driver, volume.name)  # metrics: a FUSE client restart
            self._drop_dead_mount(volume, path)
        self.mount_at(volume, path, self.run_path(volume.name))
        return path

    def mount_at(self, volume: VolumeRef, path: str, run_path: str) -> None:
        """Start the client on `path` and record its pid (and the hook's facts) at `run_path`."""
        os.makedirs(path, mode=0o755, exist_ok=True)
        run: dict[str, Any] = {}
        command = self.client_command(volume, path, run)
        pid = fuse.start(
            command,
            path,
            log_path=os.path.join(self.log_dir, f"{os.path.basename(run_path)}.log"),
            timeout=self.timeout(volume),
            what=f"{self.client_name} mount of {self.describe_remote(volume)}",
        )
        run["pid"] = pid
        write_secret(run_path, json.dumps(run))

    def detach(self, volume: VolumeRef) -> None:
        self.unmount_at(volume, self.mountpoint(volume), self.run_path(volume.name))

    def unmount_at(self, volume: VolumeRef, path: str, run_path: str) -> None:
        run = self._load_run(run_path)
        current = fuse.state(path)
        if current is MountState.ALIVE:
            # Closes reach the client asynchronously (FUSE release): let them all arrive.
            limit = self.drain_timeout(volume)
            if not fuse.wait_idle(path, limit):
                raise BackendError(
                    f"volume {volume.name}: the {self.client_name} client still has requests "
                    f"pending after {limit:g}s; not unmounting, so nothing is lost"
                )
            self.before_unmount(volume, run)
        if current is not MountState.ABSENT:
            fuse.unmount(path, pid=run.get("pid"))
        elif run.get("pid"):
            fuse.kill(int(run["pid"]), path)
        self.after_unmount(volume, run)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_path)

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        path = self.mountpoint(volume)
        return path in mounted and fuse.state(path) is MountState.ALIVE

    def usage(self, volume: VolumeRef) -> Usage | None:
        path = self.mountpoint(volume)
        if fuse.state(path) is not MountState.ALIVE:
            return None
        used = tree_size(path, USAGE_WALK_SECONDS, allocated=False)
        return None if used is None else Usage(used=used)

    def remove_local(self, volume: VolumeRef) -> None:
        """Forget this host's leftovers of a volume (mountpoint, cache, run files)."""
        self.detach(volume)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.mountpoint(volume))
        for name in os.listdir(self.log_dir):
            if name == f"{volume.name}.log":
                os.unlink(os.path.join(self.log_dir, name))

    # helpers ----------------------------------------------------------------------------
    def run_path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def secret_path(self, name: str) -> str:
        return os.path.join(self.secrets_dir, name)

    def _drop_dead_mount(self, volume: VolumeRef, path: str) -> None:
        run_path = self.run_path(volume.name)
        run = self._load_run(run_path)
        fuse.unmount(path, pid=None)
        if run.get("pid"):
            fuse.kill(int(run["pid"]), path)
        self.after_unmount(volume, run)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_path)

    @staticmethod
    def _load_run(run_path: str) -> dict[str, Any]:
        try:
            with open(run_path, encoding="utf-8") as file:
                loaded = json.load(file)
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    @staticmethod
    def remove_tree(path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)
