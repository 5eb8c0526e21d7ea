"""The S3 side of S3 volumes: where a volume's objects are, and making and deleting them.

A volume is the prefix `<prefix>/<name>/` of `bucket`, or with `bucket_per_volume=true`
the bucket `<bucket>-<name>` (made on demand). Create makes the bucket when missing,
lists the volume's prefix and (unless read-only) writes, reads back and deletes a probe
object: a wrong endpoint, key or bucket fails `docker volume create`. Remove deletes the
objects only with `delete_on_remove=true`. Every call is the rclone command line with a
0600 config file (`secrets/<name>.rclone.conf`), the one the mount uses too.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
from typing import Any

from orlop.backends.base import VolumeRef
from orlop.backends.fuse import rclone
from orlop.backends.fuse.mounting import FusePaths
from orlop.backends.fuse.options import timeout_of
from orlop.backends.fuse.secret_files import write_secret
from orlop.core.model import BackendError, InvalidOption, Usage
from orlop.host.run import CommandError, run

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_ENDPOINT_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?\Z")
_REGION_RE = re.compile(r"[a-z0-9-]{1,32}\Z")


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


class S3Remote:
    """Buckets and prefixes of one driver; `keys` are its settings' (key id, secret)."""

    def __init__(
        self, paths: FusePaths, cache_root: str, keys: tuple[str | None, str | None]
    ) -> None:
        self.paths = paths
        self.cache_root = cache_root
        self.keys = keys
        os.makedirs(self.cache_root, mode=0o700, exist_ok=True)

    # FuseRemote ---------------------------------------------------------------------------
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
        bucket, key = self.location(volume)
        try:
            # mkdir creates the bucket when missing (and answers if it exists); the
            # listing proves the volume's prefix is readable.
            self.rclone(volume, "mkdir", f"orlop:{bucket}")
            listing = self.rclone(
                volume, "lsf", "--max-depth", "1", self.remote(volume), check=False
            )
            if listing.returncode != 0 and "directory not found" not in listing.stderr:
                raise CommandError(listing.stderr.strip(), listing.returncode, listing.stderr)
        except CommandError as error:
            raise BackendError(
                f"S3 bucket {bucket} at {endpoint(volume)} could not be created or "
                f"reached: {rclone.reason(error)}"
            ) from None
        if volume.options.get("readonly") != "true":
            self._probe(volume)
        return {"bucket": bucket, "key": key}

    def remove(self, volume: VolumeRef) -> None:
        if not volume.record:
            return  # a Create that did not finish made no objects (and deletes none)
        try:
            if volume.options.get("delete_on_remove") == "true":
                result = self.rclone(volume, "purge", self.remote(volume), check=False)
                if result.returncode != 0 and "not found" not in result.stderr.lower():
                    raise CommandError(result.stderr.strip(), result.returncode, result.stderr)
        except CommandError as error:
            raise BackendError(
                f"could not delete the objects of volume {volume.name} in "
                f"{self.where(volume)}: {rclone.reason(error)}"
            ) from None
        finally:
            shutil.rmtree(self.cache_dir(volume), ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config_path(volume))

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        bucket, key = self.location(volume)
        return {"endpoint": endpoint(volume), "bucket": bucket, "key": key}

    def usage(self, volume: VolumeRef) -> Usage | None:
        try:
            result = self.rclone(volume, "size", "--json", self.remote(volume))
            return Usage(used=int(json.loads(result.stdout)["bytes"]))
        except (CommandError, ValueError, KeyError):
            return None

    # where the objects are ----------------------------------------------------------------
    def location(self, volume: VolumeRef) -> tuple[str, str]:
        """The volume's bucket and key prefix."""
        options = volume.options
        prefix = options.get("prefix", "")
        if options.get("bucket_per_volume") == "true":
            return f"{options['bucket']}-{volume.name}", prefix
        return options["bucket"], f"{prefix}/{volume.name}" if prefix else volume.name

    def remote(self, volume: VolumeRef) -> str:
        """The volume as rclone names it: orlop:<bucket>/<key>."""
        bucket, key = self.location(volume)
        return f"orlop:{bucket}/{key}" if key else f"orlop:{bucket}"

    def where(self, volume: VolumeRef) -> str:
        """The volume's objects, for messages."""
        bucket, key = self.location(volume)
        return f"s3://{bucket}/{key} at {endpoint(volume)}"

    def cache_dir(self, volume: VolumeRef) -> str:
        return os.path.join(self.cache_root, volume.name)

    # rclone's config and command line -----------------------------------------------------
    def config_path(self, volume: VolumeRef) -> str:
        return self.paths.secret_path(f"{volume.name}.rclone.conf")

    def write_config(self, volume: VolumeRef) -> str:
        """The volume's rclone config (0600: it may hold the secret key); its path."""
        options = volume.options
        lines = ["[orlop]", "type = s3"]
        if "endpoint" in options:
            lines += ["provider = Other", f"endpoint = {options['endpoint']}"]
            lines.append("force_path_style = true")
        else:
            lines.append("provider = AWS")
        lines.append(f"region = {options.get('region', 'us-east-1')}")
        key_id, secret = self.credentials(options)
        if key_id and secret:
            lines += [f"access_key_id = {key_id}", f"secret_access_key = {secret}"]
        else:
            lines.append("env_auth = true")
        return write_secret(self.config_path(volume), "\n".join(lines) + "\n")

    def credentials(self, options: dict[str, str]) -> tuple[str | None, str | None]:
        """The volume's `credentials_file` profile, else the driver's keys, else (None, None):
        rclone's env_auth then."""
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
        key_id, secret = self.keys
        if key_id and secret:
            return key_id, secret
        return None, None

    def rclone(
        self, volume: VolumeRef, *args: str, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        timeout = timeout_of(volume)
        config = self.write_config(volume)
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

    def _probe(self, volume: VolumeRef) -> None:
        """Write, read back and delete a small object: an endpoint that answers 200 to
        everything (a web server, a proxy's error page) is not S3, and says so here."""
        token = secrets.token_hex(8)
        probe = f"{self.remote(volume)}/.orlop-probe-{token}"
        try:
            self.rclone(volume, "rcat", probe, input=token.encode())
            echoed = self.rclone(volume, "cat", probe).stdout
        except CommandError as error:
            raise BackendError(
                f"S3 bucket {self.where(volume)} does not accept writes "
                f"(or the endpoint is not S3): {rclone.reason(error)}"
            ) from None
        finally:
            self.rclone(volume, "deletefile", probe, check=False)
        if echoed != token:
            raise BackendError(
                f"the endpoint {endpoint(volume)} does not behave like S3: an object "
                f"written to bucket {self.location(volume)[0]} read back as "
                f"{echoed[:80]!r}; check the endpoint URL"
            )


def endpoint(volume: VolumeRef) -> str:
    return volume.options.get("endpoint", "AWS S3")
