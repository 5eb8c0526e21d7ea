"""The `cinder` backend: Cinder volumes with a filesystem, on the cloud-disk layer."""

from __future__ import annotations

from orlop.backends.cloud.backend import CloudBackend
from orlop.backends.cloud.cinder.provider import CinderProvider


class CinderBackend(CloudBackend):
    cloud_provider = CinderProvider
