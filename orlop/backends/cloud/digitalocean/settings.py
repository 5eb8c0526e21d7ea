"""The `digitalocean` driver's settings: the API token, region and droplet, endpoints."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import SecretStr, model_validator

from orlop.backends.cloud.api import CloudSettings


class DigitalOceanSettings(CloudSettings):
    token: SecretStr | None = None
    token_file: str | None = None  # a file holding the API token (read when first needed)
    region: str | None = None  # default: the metadata service's, else the droplet's
    droplet_id: int | None = None  # default: the metadata service's
    api_url: str = "https://api.digitalocean.com"
    metadata_url: str = "http://169.254.169.254"
    metadata_timeout: float = 2.0
    api_timeout: float = 30.0  # one HTTP request (connect, and read)

    @model_validator(mode="after")
    def _check(self) -> DigitalOceanSettings:
        if (self.token is None) == (self.token_file is None):
            raise ValueError(
                "set token_file (a file holding a DigitalOcean API token) or token, not both"
            )
        url = urlsplit(self.api_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"api_url {self.api_url!r} is not an http(s) URL")
        if url.scheme == "http" and not _loopback(url.hostname):
            raise ValueError(
                f"api_url {self.api_url!r}: the API token would cross the network in clear; "
                "use https (plain http is allowed only to a loopback address, for tests)"
            )
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
