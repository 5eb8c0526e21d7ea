"""Backups of local volumes to the driver's restic repository (capabilities.backup).

A backup reads a throw-away snapshot of the volume, never the live data, so the volume stays
in use: the snapshot is staged under `<state>/backup/` (a directory volume's tree; a loopfile
volume's image, mounted), backed up with restic, and removed. A kill at any step leaves at
most that staging, which the next start removes; restic itself never shows a backup that did
not finish. Steps: backup.after_snapshot, backup.after_upload.

A restore makes a new volume: the option `from_backup=<id>` fills it during create, so a
restore that does not finish is a create that did not finish, which the service undoes.
"""

from __future__ import annotations

import logging
import os
import shlex
from typing import TYPE_CHECKING, Any, Protocol

from orlop.backends.base import VolumeRef
from orlop.backends.snapshots.restic import Repository
from orlop.backends.snapshots.settings import LocalSettings
from orlop.core.failpoints import failpoint
from orlop.core.model import InvalidOption
from orlop.core.progress import report
from orlop.host.clone import tree_bytes

if TYPE_CHECKING:
    from orlop.backends.base import BackendContext

log = logging.getLogger(__name__)


def repository_for(settings: LocalSettings, cache_dir: str) -> Repository | None:
    if not settings.backup_repository or not settings.backup_password_file:
        return None
    ssh = None
    if settings.backup_repository.startswith("sftp:"):
        # restic starts ssh itself; say which key and which host key, and never ask.
        target = settings.backup_repository.removeprefix("sftp:").split(":/", 1)[0]
        target = target.removeprefix("//").split("/", 1)[0]
        host, _, port = target.rpartition(":") if target.count(":") == 1 else (target, "", "")
        args = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
        if port.isdigit():
            args += ["-p", port]
        if settings.backup_ssh_identity:
            args += ["-i", settings.backup_ssh_identity, "-o", "IdentitiesOnly=yes"]
        if settings.backup_ssh_known_hosts:
            args += ["-o", f"UserKnownHostsFile={settings.backup_ssh_known_hosts}"]
            args += ["-o", "StrictHostKeyChecking=yes"]
        ssh = shlex.join([*args, host or target, "-s", "sftp"])
    return Repository(
        location=settings.backup_repository,
        password_file=settings.backup_password_file,
        env_file=settings.backup_env_file,
        cache_dir=cache_dir,
        ssh_command=ssh,
    )


class Stager(Protocol):
    """How a backend makes a throw-away copy of a volume's files for a backup, and removes it."""

    def stage(self, volume: VolumeRef, staging: str) -> str:
        """The volume's files as of now, under `staging`: the path to back up."""

    def unstage(self, name: str, staging: str) -> None:
        """Remove what `stage` made for volume `name` (or a kill left of it)."""

    def backup_tags(self, volume: VolumeRef) -> dict[str, str]:
        """Tags a restore needs to make the volume again (size, fs)."""


class LocalBackups:
    """A local backend's backups: its restic repository (if configured) and its staging
    directory `<state>/backup/`, a helper object the backend holds and delegates to."""

    def __init__(
        self, context: BackendContext, settings: LocalSettings, kind: str, stager: Stager
    ) -> None:
        self.context = context
        self.settings = settings
        self.kind = kind
        self.stager = stager
        self.staging = context.path("backup")
        os.makedirs(self.staging, mode=0o700, exist_ok=True)
        self.repository = repository_for(settings, context.path("restic-cache"))
        if self.repository is not None:
            self.repository.check()  # a missing or world-readable secret file stops serve

    @property
    def available(self) -> bool:
        """Whether the driver has a repository: its `backup` capability."""
        return self.repository is not None

    def _repository(self) -> Repository:
        if self.repository is None:
            raise InvalidOption(
                f"driver {self.context.driver} has no backup repository: set "
                "backup_repository and backup_password_file in its settings"
            )
        return self.repository

    # Backupable ---------------------------------------------------------------------
    def stage_backup(self, volume: VolumeRef) -> str:
        """A snapshot of `volume` to back up, made now; `send_backup` uploads and removes it.

        The service holds the volume's lock for this step only: the upload, which takes as
        long as the data needs, does not keep a container's Mount waiting."""
        self._repository().check()
        staged = self.stager.stage(volume, self.staging)
        try:
            if not [e for e in os.listdir(staged) if e != "lost+found"]:
                raise InvalidOption(f"volume {volume.name} is empty: there is nothing to back up")
        except BaseException:
            self.stager.unstage(volume.name, self.staging)
            raise
        failpoint("backup.after_snapshot")
        return staged

    def send_backup(self, volume: VolumeRef, staged: str) -> dict[str, Any]:
        """Upload what `stage_backup` made to the repository; return the new backup."""
        try:
            repository = self._repository()
            repository.ensure()
            tags = {"volume": volume.name, "kind": self.kind, "driver": self.context.driver}
            tags.update(self.stager.backup_tags(volume))
            tags["bytes"] = str(tree_bytes(staged))  # the total of a restore's progress bar
            summary = repository.backup(staged, tags, report)
        finally:
            self.stager.unstage(volume.name, self.staging)
        failpoint("backup.after_upload")
        made = repository.backup_facts(summary, tags)
        keep = self.settings.keep()
        if keep:
            repository.forget(volume.name, keep)
        log.info("volume %s: backup %s", volume.name, made["short_id"])
        added = summary.get("data_added")
        return {**made, "files": summary.get("total_files_processed"), "added": added}

    def create_backup(self, volume: VolumeRef) -> dict[str, Any]:
        """Both steps at once (for callers that hold no lock to release in between)."""
        return self.send_backup(volume, self.stage_backup(volume))

    def list_backups(self, volume: str | None) -> list[dict[str, Any]]:
        return self._repository().snapshots(volume)

    def find_backup(self, backup: str) -> dict[str, Any]:
        found = self._repository().find(backup)
        if found["kind"] != self.kind:
            raise InvalidOption(
                f"backup {backup} is of a {found['kind']} volume: restore it with a "
                f"{found['kind']} driver (this one is {self.kind})"
            )
        return found

    def backup_options(self, backup: dict[str, Any]) -> dict[str, str]:
        options = {"from_backup": backup["id"]}
        if backup.get("size"):
            options["size"] = str(backup["size"])
        if backup.get("fs"):
            options["fs"] = str(backup["fs"])
        return options

    def restore_into(self, backup: str, target: str) -> None:
        self._repository().restore(backup, target, report)
        failpoint("restore.after_download")
