"""S3 volumes: one prefix of a bucket per volume (or one bucket each), through rclone mount.

The volume `name` is `<bucket>/<prefix>/<name>/` in the bucket; with
`bucket_per_volume=true` it is the bucket `<bucket>-<name>` (made on demand). Objects stay
at Remove unless `delete_on_remove=true`. The parts: `RcloneMountClient` (s3_client.py)
mounts a volume and lets an unmount go ahead only once every upload finished;
`S3Remote` (s3_remote.py) makes, probes and deletes the bucket or prefix.

Credentials, first found wins: `credentials_file` (an AWS credentials file, section
`profile`), the driver's settings `access_key_id` / `secret_access_key`, else the usual AWS
environment (rclone's env_auth). They go into a 0600 rclone config file under the driver's
state directory, never on a command line.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr, model_validator

from orlop.backends.base import BackendContext, Check, tool_check
from orlop.backends.fuse.backend import FuseBackend
from orlop.backends.fuse.mounting import FuseMounts, FusePaths, fuse_device_check
from orlop.backends.fuse.options import existing_file, parse_timeout
from orlop.backends.fuse.s3_client import RcloneMountClient
from orlop.backends.fuse.s3_remote import (
    S3Remote,
    canonical_bucket,
    canonical_endpoint,
    canonical_prefix,
    canonical_region,
)
from orlop.backends.settings import BackendSettings, secret_value
from orlop.core.options import Option, OptionSet, canonical_bool, canonical_size


class S3Settings(BackendSettings):
    """Credentials for the volumes that bring no `credentials_file`."""

    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> S3Settings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together: set both or none")
        return self


class S3Backend(FuseBackend):
    """S3 volumes: `RcloneMountClient` mounts them, `S3Remote` makes their bucket or prefix."""

    kind: ClassVar[str] = "s3"
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("endpoint", canonical_endpoint, "S3 endpoint URL (default: AWS)"),
            Option("bucket", canonical_bucket, "the bucket (or bucket name prefix); required"),
            Option("prefix", canonical_prefix, "key prefix under which volumes live"),
            Option("region", canonical_region, "the region (default us-east-1)"),
            Option("credentials_file", existing_file("AWS credentials file"), "credentials"),
            Option("profile", help="section of credentials_file to use (default: default)"),
            Option("cache_size", canonical_size, "local cache limit, e.g. 1G (default: none)"),
            Option("bucket_per_volume", canonical_bool, "one bucket per volume (false)"),
            Option("delete_on_remove", canonical_bool, "delete the objects at Remove (false)"),
            Option("readonly", canonical_bool, "mount read-only (false)"),
            Option("ca_cert", existing_file("CA certificate"), "CA bundle for a private TLS CA"),
            Option("timeout", parse_timeout, "seconds to reach S3 and mount (default 20)"),
            Option("upload_timeout", parse_timeout, "seconds Unmount waits for uploads (600)"),
        ]
    )
    settings_model: ClassVar[type[BackendSettings]] = S3Settings
    client: RcloneMountClient
    remote: S3Remote

    def __init__(self, context: BackendContext) -> None:
        settings = S3Settings.parse(self.kind, context.settings)
        paths = FusePaths.make(context)
        keys = (settings.access_key_id, secret_value(settings.secret_access_key))
        remote = S3Remote(paths, context.path("cache"), keys)
        super().__init__(context, FuseMounts(paths, RcloneMountClient(paths, remote)), remote)

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [
            tool_check("rclone", "rclone"),
            tool_check("fusermount3", "fuse3"),
            fuse_device_check(),
        ]
