"""S3 volumes: one prefix of a bucket per volume (or one bucket each), through rclone mount.

The volume `name` is `<bucket>/<prefix>/<name>/` in the bucket; with
`bucket_per_volume=true` it is the bucket `<bucket>-<name>` (made on demand). Objects stay
at Remove unless `delete_on_remove=true`.

rclone mounts it with its VFS cache in `writes` mode (so programs may seek and rewrite)
and uploads each file as soon as it is closed. Unmount answers only once the kernel holds
no request for the mount (closes reach rclone asynchronously) and rclone reports no upload
queued or running — asked through its remote-control API on 127.0.0.1, behind a per-mount
random password — so another host that mounts the volume right after reads everything.

Credentials, first found wins: `credentials_file` (an AWS credentials file, section
`profile`), the driver's settings `access_key_id` / `secret_access_key`, else the usual AWS
environment (rclone's env_auth). They go into a 0600 rclone config file under the driver's
state directory, never on a command line.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import secrets
import time
from typing import Any, ClassVar

from pydantic import SecretStr, model_validator

from orlop.backends.base import BackendContext, Check, VolumeRef, tool_check
from orlop.backends.fuse import rclone
from orlop.backends.fuse.layer import (
    FuseBackend,
    existing_file,
    fuse_device_check,
    parse_timeout,
    write_secret,
)
from orlop.backends.settings import BackendSettings, secret_value
from orlop.core.model import BackendError, InvalidOption, Usage
from orlop.core.options import Option, OptionSet, canonical_bool, canonical_size
from orlop.host import fuse
from orlop.host.fuse import FuseCommand, MountState
from orlop.host.fuse import state as mount_state
from orlop.host.run import CommandError, run, which

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_ENDPOINT_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?\Z")
_REGION_RE = re.compile(r"[a-z0-9-]{1,32}\Z")
UPLOAD_POLL = 0.05


def canonical_bucket(value: str) -> str:
    if not _BUCKET_RE.match(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a bucket name: 3 to 63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def canonical_endpoint(value: str) -> str:
    if not _ENDPOINT_RE.match(value):
        raise ValueError(f"{value!r} is not an endpoint URL: use e.g. https://s3.example.com:9000")
    return value.rstrip("/")


def canonical_prefix(value: str) -> str:
    parts = [part for part in value.split("/") if part]
    if any(part in (".", "..") or any(ord(c) < 32 for c in part) for part in parts):
        raise ValueError(f"{value!r} is not a key prefix: no '.', '..' or control characters")
    return "/".join(parts)


def canonical_region(value: str) -> str:
    if not _REGION_RE.match(value):
        raise ValueError(f"{value!r} is not a region name (e.g. us-east-1)")
    return value


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
    kind: ClassVar[str] = "s3"
    client_name = "rclone"
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

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.settings = S3Settings.parse(self.kind, context.settings)
        self.cache_root = context.path("cache")
        os.makedirs(self.cache_root, mode=0o700, exist_ok=True)

    # Backend protocol -------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        # No options at all is Docker repeating a Create of an existing volume; a new one
        # without bucket is refused by create().
        if options and "bucket" not in options:
            raise InvalidOption(
                "option bucket is required: the S3 bucket for the volumes "
                "(set it per volume or in the driver's options)"
            )
        if options.get("bucket_per_volume") == "true":
            bucket = f"{options['bucket']}-{name}"
            try:
                canonical_bucket(bucket)
            except ValueError:
                raise InvalidOption(
                    f"with bucket_per_volume=true the volume name must make a valid bucket "
                    f"name: {bucket!r} is not (use lowercase letters, digits, '-' and '.', "
                    "63 characters in all)"
                ) from None
        if "profile" in options and "credentials_file" not in options:
            raise InvalidOption("option profile needs option credentials_file")

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        self.validate(volume.name, volume.options or {"": ""})
        bucket, key = self._location(volume)
        try:
            # mkdir creates the bucket when missing (and answers if it exists); the
            # listing proves the volume's prefix is readable.
            self._rclone(volume, "mkdir", f"orlop:{bucket}")
            listing = self._rclone(
                volume, "lsf", "--max-depth", "1", self._remote(volume), check=False
            )
            if listing.returncode != 0 and "directory not found" not in listing.stderr:
                raise CommandError(listing.stderr.strip(), listing.returncode, listing.stderr)
        except CommandError as error:
            raise BackendError(
                f"S3 bucket {bucket} at {self._endpoint(volume)} could not be created or "
                f"reached: {rclone.reason(error)}"
            ) from None
        if volume.options.get("readonly") != "true":
            self._probe(volume)
        return {"bucket": bucket, "key": key}

    def _probe(self, volume: VolumeRef) -> None:
        """Write, read back and delete a small object: an endpoint that answers 200 to
        everything (a web server, a proxy's error page) is not S3, and says so here."""
        token = secrets.token_hex(8)
        probe = f"{self._remote(volume)}/.orlop-probe-{token}"
        try:
            self._rclone(volume, "rcat", probe, input=token.encode())
            echoed = self._rclone(volume, "cat", probe).stdout
        except CommandError as error:
            raise BackendError(
                f"S3 bucket {self.describe_remote(volume)} does not accept writes "
                f"(or the endpoint is not S3): {rclone.reason(error)}"
            ) from None
        finally:
            self._rclone(volume, "deletefile", probe, check=False)
        if echoed != token:
            raise BackendError(
                f"the endpoint {self._endpoint(volume)} does not behave like S3: an object "
                f"written to bucket {self._location(volume)[0]} read back as "
                f"{echoed[:80]!r}; check the endpoint URL"
            )

    def remove(self, volume: VolumeRef) -> None:
        self.remove_local(volume)
        if not volume.record:
            return  # a Create that did not finish made no objects (and deletes none)
        try:
            if volume.options.get("delete_on_remove") == "true":
                result = self._rclone(volume, "purge", self._remote(volume), check=False)
                if result.returncode != 0 and "not found" not in result.stderr.lower():
                    raise CommandError(result.stderr.strip(), result.returncode, result.stderr)
        except CommandError as error:
            raise BackendError(
                f"could not delete the objects of volume {volume.name} in "
                f"{self.describe_remote(volume)}: {rclone.reason(error)}"
            ) from None
        finally:
            self.remove_tree(os.path.join(self.cache_root, volume.name))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._config_path(volume))

    def usage(self, volume: VolumeRef) -> Usage | None:
        if mount_state(self.mountpoint(volume)) is MountState.ALIVE:
            return super().usage(volume)  # counts files still waiting for upload too
        try:
            result = self._rclone(volume, "size", "--json", self._remote(volume))
            return Usage(used=int(json.loads(result.stdout)["bytes"]))
        except (CommandError, ValueError, KeyError):
            return None

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        bucket, key = self._location(volume)
        return {"endpoint": self._endpoint(volume), "bucket": bucket, "key": key}

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [
            tool_check("rclone", "rclone"),
            tool_check("fusermount3", "fuse3"),
            fuse_device_check(),
        ]

    # FuseBackend hooks ------------------------------------------------------------------
    def describe_remote(self, volume: VolumeRef) -> str:
        bucket, key = self._location(volume)
        return f"s3://{bucket}/{key} at {self._endpoint(volume)}"

    def client_command(
        self, volume: VolumeRef, mountpoint: str, run: dict[str, Any]
    ) -> FuseCommand:
        config = self._write_config(volume)
        password = secrets.token_urlsafe(24)
        htpasswd = write_secret(
            self.secret_path(f"{volume.name}.htpasswd"), rclone.htpasswd_line(password)
        )
        write_secret(self.secret_path(f"{volume.name}.rc"), password)
        port = rclone.free_port()
        run["rc_port"] = port
        options = volume.options
        args = [
            which("rclone") or "rclone",
            "--config",
            config,
            "mount",
            self._remote(volume),
            mountpoint,
            "--s3-no-check-bucket",  # Create made it; a mount must not make buckets
            "--vfs-cache-mode",
            "writes",
            "--vfs-write-back",
            "0s",
            "--cache-dir",
            os.path.join(self.cache_root, volume.name),
            "--dir-cache-time",
            "5s",
            # Each closed file uploads at once (write-back 0s): let many go in parallel, so
            # a container writing many small files is not held up at its last close.
            "--transfers",
            "16",
            "--allow-other",
            "--contimeout",
            f"{self.timeout(volume):g}s",
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

    def drain_timeout(self, volume: VolumeRef) -> float:
        return float(volume.options.get("upload_timeout", "600"))

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
            kernel = fuse.pending_requests(self.mountpoint(volume))
            pending += kernel or 0
            # FUSE delivers release (where rclone queues the upload) asynchronously: with
            # fusectl the kernel says when none is left; without it, two quiet readings.
            quiet = quiet + 1 if pending == 0 else 0
            if quiet >= (1 if kernel is not None else 2):
                if int(cache.get("erroredFiles", 0)):
                    raise BackendError(
                        f"{cache['erroredFiles']} file(s) of volume {volume.name} failed to "
                        f"upload to {self.describe_remote(volume)}; the mount stays until "
                        "they are uploaded (see the driver's logs)"
                    )
                return
            time.sleep(UPLOAD_POLL)
        raise BackendError(
            f"volume {volume.name}: uploads to {self.describe_remote(volume)} did not finish "
            f"within {limit:g}s ({stats.get('diskCache', {})}); the mount stays so nothing "
            "is lost — retry the unmount"
        )

    def after_unmount(self, volume: VolumeRef, run: dict[str, Any]) -> None:
        for suffix in (".htpasswd", ".rc"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.secret_path(f"{volume.name}{suffix}"))

    # helpers ----------------------------------------------------------------------------
    def _location(self, volume: VolumeRef) -> tuple[str, str]:
        options = volume.options
        prefix = options.get("prefix", "")
        if options.get("bucket_per_volume") == "true":
            return f"{options['bucket']}-{volume.name}", prefix
        return options["bucket"], f"{prefix}/{volume.name}" if prefix else volume.name

    def _remote(self, volume: VolumeRef) -> str:
        bucket, key = self._location(volume)
        return f"orlop:{bucket}/{key}" if key else f"orlop:{bucket}"

    @staticmethod
    def _endpoint(volume: VolumeRef) -> str:
        return volume.options.get("endpoint", "AWS S3")

    def _config_path(self, volume: VolumeRef) -> str:
        return self.secret_path(f"{volume.name}.rclone.conf")

    def _write_config(self, volume: VolumeRef) -> str:
        options = volume.options
        lines = ["[orlop]", "type = s3"]
        if "endpoint" in options:
            lines += ["provider = Other", f"endpoint = {options['endpoint']}"]
            lines.append("force_path_style = true")
        else:
            lines.append("provider = AWS")
        lines.append(f"region = {options.get('region', 'us-east-1')}")
        key_id, secret = self._credentials(options)
        if key_id and secret:
            lines += [f"access_key_id = {key_id}", f"secret_access_key = {secret}"]
        else:
            lines.append("env_auth = true")
        return write_secret(self._config_path(volume), "\n".join(lines) + "\n")

    def _credentials(self, options: dict[str, str]) -> tuple[str | None, str | None]:
        if "credentials_file" in options:
            parser = configparser.ConfigParser(interpolation=None)
            path, profile = options["credentials_file"], options.get("profile", "default")
            try:
                parser.read(path, encoding="utf-8")
                section = parser[profile]
                return section["aws_access_key_id"].strip(), section[
                    "aws_secret_access_key"
                ].strip()
            except (configparser.Error, KeyError, OSError):
                raise InvalidOption(
                    f"credentials_file {path} has no section [{profile}] with "
                    "aws_access_key_id and aws_secret_access_key"
                ) from None
        settings = self.settings
        if settings.access_key_id and settings.secret_access_key:
            return settings.access_key_id, secret_value(settings.secret_access_key)
        return None, None

    def _rclone(
        self, volume: VolumeRef, *args: str, check: bool = True, input: bytes | None = None
    ) -> Any:
        timeout = self.timeout(volume)
        config = self._write_config(volume)
        flags = [
            "--config",
            config,
            "--contimeout",
            f"{timeout:g}s",
            "--timeout",
            f"{timeout:g}s",
            "--retries",
            "1",
            "--low-level-retries",
            "1",
        ]
        if "ca_cert" in volume.options:
            flags += ["--ca-cert", volume.options["ca_cert"]]
        return run(
            ["rclone", *flags, *args],
            timeout=timeout * 3 + 5,
            env=rclone.child_env(),
            check=check,
            input=input,
        )

    def _rc(self, volume: VolumeRef, port: int, method: str) -> dict[str, Any]:
        try:
            with open(self.secret_path(f"{volume.name}.rc"), encoding="utf-8") as file:
                password = file.read().strip()
        except OSError:
            raise BackendError(
                f"volume {volume.name}: the rclone control password is gone; "
                "cannot check that uploads finished"
            ) from None
        try:
            return rclone.rc_call(port, password, method, self.timeout(volume))
        except (OSError, ValueError) as error:
            raise BackendError(
                f"volume {volume.name}: rclone did not answer on its control port ({error}); "
                "cannot check that uploads finished"
            ) from None
