"""The rclone mount client of S3 volumes: how a volume is mounted, and unmounted safely.

rclone mounts the volume's prefix with its VFS cache in `writes` mode (so programs may
seek and rewrite) and uploads each file as soon as it is closed. An unmount goes ahead
only once the kernel holds no request for the mount (closes reach rclone asynchronously)
and rclone reports no upload queued or running — asked through its remote-control API on
127.0.0.1, behind a per-mount random password — so another host that mounts the volume
right after reads everything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from typing import Any

from orlop.backends.base import VolumeRef
from orlop.backends.fuse import rclone
from orlop.backends.fuse.mounting import FusePaths
from orlop.backends.fuse.options import timeout_of
from orlop.backends.fuse.s3_remote import S3Remote
from orlop.backends.fuse.secret_files import write_secret
from orlop.core.model import BackendError
from orlop.host import fuse
from orlop.host.fuse import FuseCommand
from orlop.host.run import which

UPLOAD_POLL = 0.05
UPLOAD_TIMEOUT = "600"


class RcloneMountClient:
    name = "rclone"

    def __init__(self, paths: FusePaths, remote: S3Remote) -> None:
        self.paths = paths
        self.remote = remote  # where the objects are, and rclone's config

    def command(self, volume: VolumeRef, mountpoint: str, run: dict[str, Any]) -> FuseCommand:
        config = self.remote.write_config(volume)
        password = secrets.token_urlsafe(24)
        htpasswd = write_secret(
            self.paths.secret_path(f"{volume.name}.htpasswd"), rclone.htpasswd_line(password)
        )
        write_secret(self.paths.secret_path(f"{volume.name}.rc"), password)
        port = rclone.free_port()
        run["rc_port"] = port
        options = volume.options
        args = [
            which("rclone") or "rclone",
            "--config",
            config,
            "mount",
            self.remote.remote(volume),
            mountpoint,
            "--s3-no-check-bucket",  # Create made it; a mount must not make buckets
            "--vfs-cache-mode",
            "writes",
            "--vfs-write-back",
            "0s",
            "--cache-dir",
            self.remote.cache_dir(volume),
            "--dir-cache-time",
            "5s",
            # Each closed file uploads at once (write-back 0s): let many go in parallel, so
            # a container writing many small files is not held up at its last close.
            "--transfers",
            "16",
            "--allow-other",
            "--contimeout",
            f"{timeout_of(volume):g}s",
            "--rc",
            "--rc-addr",
            f"127.0.0.1:{port}",
            "--rc-htpasswd",
            htpasswd,
            "--log-level",
            "NOTICE",
        ]
        if "cache_size" in options:
            args += ["--vfs-cache-max-size", options["cache_size"]]
        if options.get("readonly") == "true":
            args.append("--read-only")
        if "ca_cert" in options:
            args += ["--ca-cert", options["ca_cert"]]
        return FuseCommand(args, env=rclone.child_env())

    def describe(self, volume: VolumeRef) -> str:
        return self.remote.where(volume)

    def drain_timeout(self, volume: VolumeRef) -> float:
        return float(volume.options.get("upload_timeout", UPLOAD_TIMEOUT))

    def before_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        """Wait until rclone has no open file and no upload pending: nothing is lost."""
        port = run.get("rc_port")
        if not port:
            return
        limit = self.drain_timeout(volume)
        deadline = time.monotonic() + limit
        stats: dict[str, Any] = {}
        quiet = 0
        while time.monotonic() < deadline:
            stats = self._rc(volume, int(port), "vfs/stats")
            cache = stats.get("diskCache", {})
            pending = int(cache.get("uploadsInProgress", 0)) + int(cache.get("uploadsQueued", 0))
            kernel = fuse.pending_requests(self.paths.mountpoint(volume.name))
            pending += kernel or 0
            # FUSE delivers release (where rclone queues the upload) asynchronously: with
            # fusectl the kernel says when none is left; without it, two quiet readings.
            quiet = quiet + 1 if pending == 0 else 0
            if quiet >= (1 if kernel is not None else 2):
                if int(cache.get("erroredFiles", 0)):
                    raise BackendError(
                        f"{cache['erroredFiles']} file(s) of volume {volume.name} failed to "
                        f"upload to {self.describe(volume)}; the mount stays until "
                        "they are uploaded (see the driver's logs)"
                    )
                return
            time.sleep(UPLOAD_POLL)
        raise BackendError(
            f"volume {volume.name}: uploads to {self.describe(volume)} did not finish "
            f"within {limit:g}s ({stats.get('diskCache', {})}); the mount stays so nothing "
            "is lost — retry the unmount"
        )

    def after_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        for suffix in (".htpasswd", ".rc"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.paths.secret_path(f"{volume.name}{suffix}"))

    def _rc(self, volume: VolumeRef, port: int, method: str) -> dict[str, Any]:
        try:
            with open(self.paths.secret_path(f"{volume.name}.rc"), encoding="utf-8") as file:
                password = file.read().strip()
        except OSError:
            raise BackendError(
                f"volume {volume.name}: the rclone control password is gone; "
                "cannot check that uploads finished"
            ) from None
        try:
            return rclone.rc_call(port, password, method, timeout_of(volume))
        except (OSError, ValueError) as error:
            raise BackendError(
                f"volume {volume.name}: rclone did not answer on its control port ({error}); "
                "cannot check that uploads finished"
            ) from None
