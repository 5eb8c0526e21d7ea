"""Google Persistent Disk on the cloud-disk layer (driver kind `gce`)."""

from __future__ import annotations

from orlop.backends.cloud.backend import CloudBackend
from orlop.backends.cloud.gce.provider import GceProvider
from orlop.backends.cloud.gce.settings import GceSettings


class GceBackend(CloudBackend):
    """Persistent disks with a filesystem: the block layer over the cloud-disk layer over
    the Compute Engine API."""

    cloud_provider = GceProvider


__all__ = ["GceBackend", "GceProvider", "GceSettings"]
