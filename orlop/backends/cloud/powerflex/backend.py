"""Dell PowerFlex (ScaleIO) volumes on the cloud-disk layer (driver kind `powerflex`)."""

from __future__ import annotations

from orlop.backends.cloud.backend import CloudBackend
from orlop.backends.cloud.powerflex.provider import PowerFlexProvider


class PowerFlexBackend(CloudBackend):
    """PowerFlex volumes with a filesystem: the block layer over the cloud-disk layer."""

    cloud_provider = PowerFlexProvider


__all__ = ["PowerFlexBackend", "PowerFlexProvider"]
