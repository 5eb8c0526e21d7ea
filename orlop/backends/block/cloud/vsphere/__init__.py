"""VMware vSphere virtual disks (driver kind `vsphere`): see `provider.py`."""

from orlop.backends.block.cloud.vsphere.backend import VsphereBackend
from orlop.backends.block.cloud.vsphere.provider import VsphereProvider
from orlop.backends.block.cloud.vsphere.settings import VsphereSettings

__all__ = ["VsphereBackend", "VsphereProvider", "VsphereSettings"]
