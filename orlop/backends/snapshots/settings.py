"""Driver settings of the local backends (directory, loopfile): schedules and backups.

settings:
  snapshot_schedule: hourly:24,daily:7       # every volume of the driver (a volume's own
                                             # snapshot_schedule option wins)
  backup_repository: s3:http://127.0.0.1:9000/bucket/orlop    # restic's syntax
  backup_password_file: /etc/orlop/restic.pass                  # 0600
  backup_env_file: /etc/orlop/restic.env     # 0600: AWS_ACCESS_KEY_ID=…, …
  backup_ssh_identity: /root/.ssh/id_ed25519 # sftp: the key and the host's known key
  backup_ssh_known_hosts: /etc/orlop/known_hosts
  keep_daily: 7                              # backup retention (restic forget)
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from orlop.backends.block.backend import BlockSettings
from orlop.backends.settings import BackendSettings
from orlop.core.schedule import canonical_schedule

KEEP = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


class LocalSettings(BackendSettings):
    snapshot_schedule: str | None = None
    backup_repository: str | None = None
    backup_password_file: str | None = None
    backup_env_file: str | None = None
    backup_ssh_identity: str | None = None
    backup_ssh_known_hosts: str | None = None
    keep_last: int | None = Field(default=None, ge=1)
    keep_hourly: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=None, ge=1)
    keep_weekly: int | None = Field(default=None, ge=1)
    keep_monthly: int | None = Field(default=None, ge=1)
    keep_yearly: int | None = Field(default=None, ge=1)

    @field_validator("snapshot_schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value is None else canonical_schedule(value)

    @field_validator(
        "backup_password_file", "backup_env_file", "backup_ssh_identity", "backup_ssh_known_hosts"
    )
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path")
        return value

    @model_validator(mode="after")
    def _repository_needs_password(self) -> LocalSettings:
        if self.backup_repository and not self.backup_password_file:
            raise ValueError(
                "backup_repository needs backup_password_file (a 0600 file holding the "
                "repository's password)"
            )
        if not self.backup_repository and (self.backup_password_file or self.backup_env_file):
            raise ValueError("backup_password_file and backup_env_file need backup_repository")
        return self

    def keep(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in KEEP if getattr(self, name) is not None}


class LoopFileSettings(LocalSettings, BlockSettings):
    """The loopfile driver's: the local ones and the block layer's (allow_suid_dev)."""
