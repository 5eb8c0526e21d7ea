"""The `vsphere` backend: vSphere virtual disks with a filesystem, on the cloud-disk layer.

`access=read-only` is vDVS's option of that name: the disk is attached as any other (SCSI
has no read-only attachment) and every mount of its filesystem is read-only.
"""

from __future__ import annotations

import dataclasses

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.backend import CloudBackend
from orlop.backends.cloud.vsphere.provider import VsphereProvider


class VsphereBackend(CloudBackend):
    cloud_provider = VsphereProvider

    def attach(self, volume: VolumeRef) -> str:
        if volume.options.get("access") == "read-only":
            given = volume.options.get("mount_options", "")
            options = {**volume.options, "mount_options": ",".join(filter(None, [given, "ro"]))}
            volume = dataclasses.replace(volume, options=options)
        return super().attach(volume)
