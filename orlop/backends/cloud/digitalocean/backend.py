"""DigitalOcean Block Storage volumes on the cloud-disk layer (driver kind `digitalocean`)."""

from __future__ import annotations

from orlop.backends.cloud.backend import CloudBackend
from orlop.backends.cloud.digitalocean.provider import DigitalOceanProvider


class DigitalOceanBackend(CloudBackend):
    """DigitalOcean volumes with a filesystem: the block layer over the cloud-disk layer."""

    cloud_provider = DigitalOceanProvider


__all__ = ["DigitalOceanBackend", "DigitalOceanProvider"]
