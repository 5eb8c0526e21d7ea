"""The SSH server's side of sshfs volumes: the volume's directory, made and deleted.

Create and Remove work through a private sshfs mount of the parent directory (`path`)
under `admin/<name>`, never a shell: a server that offers only SFTP works, with the same
credentials and host key checks as the volume's own mount, and a bad host, key or host
key fails `docker volume create`, not a container start. With `share=true` the volume is
`path` itself: nothing is made, and Remove leaves the server alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

from orlop.backends.base import VolumeRef
from orlop.backends.fuse.mounting import FusePaths
from orlop.backends.fuse.options import timeout_of
from orlop.backends.fuse.sshfs_client import SshfsClient, address, volume_path
from orlop.core.model import BackendError, InvalidOption, Usage
from orlop.host import fuse, mounts


class SshfsRemote:
    def __init__(self, paths: FusePaths, admin_root: str, client: SshfsClient) -> None:
        self.paths = paths
        self.admin_root = admin_root
        self.client = client
        os.makedirs(self.admin_root, mode=0o700, exist_ok=True)

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
                        f"cannot make directory {volume_path(volume)} on "
                        f"{address(volume)}: {error.strerror}"
                    ) from None
                still = mounts.mount_at(parent)
                if mounted is None or still is None or still.mount_id != mounted.mount_id:
                    with contextlib.suppress(OSError):
                        os.rmdir(target)  # made underneath, on this host: not the volume
                    raise BackendError(
                        f"the sshfs connection to {address(volume)} ended while the "
                        "volume's directory was being made; see the driver's admin log"
                    )
        return {"remote": self.client.describe(volume)}

    def remove(self, volume: VolumeRef) -> None:
        if not volume.record or volume.options.get("share") == "true":
            # A Create that did not finish made at most an empty directory, which may be
            # another host's volume of the same name; a shared directory is not ours.
            return
        with self._parent_mounted(volume) as parent:
            target = os.path.join(parent, volume.name)
            if os.path.lexists(target):
                _remove_tree(target)
            if os.path.lexists(target):
                raise BackendError(f"could not delete {volume_path(volume)} on {address(volume)}")

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        return {"remote": self.client.describe(volume)}

    def usage(self, volume: VolumeRef) -> Usage | None:
        return None  # SFTP cannot tell a directory's size without a walk of the mount

    @contextlib.contextmanager
    def _parent_mounted(self, volume: VolumeRef) -> Iterator[str]:
        """Mount the volume's parent directory (`path`) privately for Create and Remove."""
        parent = os.path.join(self.admin_root, volume.name)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        fuse.unmount(parent, pid=None)  # a leftover of a crash
        command = self.client.command_for(
            volume, volume.options.get("path", ""), parent, admin=True
        )
        pid = fuse.start(
            command,
            parent,
            log_path=os.path.join(self.paths.log_dir, f"{volume.name}.admin.log"),
            timeout=timeout_of(volume),
            what=f"sshfs connection to {address(volume)}",
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
