"""DigitalOcean Block Storage volumes on the cloud-disk layer (driver kind `digitalocean`)."""

from __future__ import annotations

from orlop.backends.block.cloud.digitalocean.provider import DigitalOceanProvider

__all__ = ["DigitalOceanProvider"]
