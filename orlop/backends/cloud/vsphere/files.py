"""Where a volume's files live in a datastore: `DiskPath`, the ID of a volume's disk.

A volume's disk is `[datastore] <folder>/<base>.vmdk` and its metadata file `<base>.json`
beside it; how `base` says which volume of which namespace it is, and what the metadata file
holds, is `labels.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from orlop.backends.cloud.naming import decode_value
from orlop.backends.cloud.vsphere.labels import base_name as base_name  # names it had: kept
from orlop.backends.cloud.vsphere.labels import dump_metadata as dump_metadata
from orlop.backends.cloud.vsphere.labels import load_metadata as load_metadata
from orlop.backends.cloud.vsphere.labels import namespace_tag as namespace_tag


@dataclass(frozen=True, slots=True)
class DiskPath:
    """`[datastore] folder/base.vmdk`, the ID of a volume's disk."""

    datastore: str
    folder: str
    base: str

    @classmethod
    def of(cls, datastore: str, folder: str, namespace: str, volume: str) -> DiskPath:
        return cls(datastore, folder, base_name(namespace, volume))

    @classmethod
    def parse(cls, disk_id: str) -> DiskPath | None:
        """The path in a disk ID, None for one that is not `[ds] folder/base.vmdk`."""
        if not disk_id.startswith("[") or "] " not in disk_id:
            return None
        datastore, _, path = disk_id[1:].partition("] ")
        folder, _, file = path.rpartition("/")
        if not folder or not file.endswith(".vmdk"):
            return None
        return cls(datastore, folder, file[: -len(".vmdk")])

    @property
    def id(self) -> str:
        return f"[{self.datastore}] {self.folder}/{self.base}.vmdk"

    @property
    def vmdk(self) -> str:  # the path inside the datastore
        return f"{self.folder}/{self.base}.vmdk"

    @property
    def metadata(self) -> str:
        return f"{self.folder}/{self.base}.json"

    @property
    def folder_id(self) -> str:
        return f"[{self.datastore}] {self.folder}"

    def volume(self) -> str | None:
        """The Docker name in the file name, None if it was cut (or is not Orlop's)."""
        parts = self.base.split(".")
        if len(parts) != 2:
            return None
        try:
            return decode_value(parts[0])
        except ValueError:
            return None

    def in_namespace(self, namespace: str) -> bool:
        return self.base.endswith("." + namespace_tag(namespace))
