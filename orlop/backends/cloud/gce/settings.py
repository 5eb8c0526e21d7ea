"""The `gce` driver's settings: who this machine is, where the Compute API is, credentials."""

from __future__ import annotations

import re

from pydantic import field_validator

from orlop.backends.cloud.api import CloudSettings

# Docker-name characters: what naming.encode_value turns into label text reversibly.
_NAMESPACE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}\Z")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]\Z")


class GceSettings(CloudSettings):
    """Every setting is optional on a Compute Engine VM: identity comes from the metadata
    server and credentials from Application Default Credentials (the VM's service account)."""

    project: str | None = None  # the project ID; default: the metadata server's
    zone: str | None = None  # this instance's zone; default: the metadata server's
    instance: str | None = None  # this instance's *name*; default: the metadata server's
    endpoint_url: str | None = None  # Compute API root, e.g. http://127.0.0.1:8089
    metadata_url: str = "http://metadata.google.internal"
    credentials_file: str | None = None  # service-account JSON; absent: ADC (or anonymous
    # when endpoint_url is set, for a test server)
    metadata_timeout: float = 3.0  # each metadata server request
    api_timeout: float = 60.0  # each Compute API request (operations wait in slices of it)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError(
                f"{value!r} is not a namespace: use 1 to 63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not _ZONE.match(value):
            raise ValueError(f"{value!r} is not a Compute Engine zone (e.g. us-central1-a)")
        return value

    @field_validator("metadata_timeout", "api_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be greater than zero")
        return value
