"""AWS EBS volumes on the cloud-disk layer (driver kind `ebs`)."""

from __future__ import annotations

from orlop.backends.cloud.backend import CloudBackend
from orlop.backends.cloud.ebs.provider import EbsProvider


class EbsBackend(CloudBackend):
    """EBS volumes with a filesystem: the block layer over the cloud-disk layer over EC2."""

    cloud_provider = EbsProvider


__all__ = ["EbsBackend", "EbsProvider"]
