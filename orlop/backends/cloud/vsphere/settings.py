"""The `vsphere` driver's settings and volume options.

A volume is one VMDK file in a datastore folder; its options say how the file is made
(`size`, `diskformat`, `datastore`, `clone_from`) and how it is attached (`attach_as`,
`access`). vSphere sizes disks in KiB; Orlop rounds a size up to whole MiB.
"""

from __future__ import annotations

import math
import re

from pydantic import field_validator

from orlop.backends.cloud.api import CloudSettings
from orlop.core.model import OrlopError, validate_name
from orlop.core.options import Option, OptionSet, bounded_size, one_of

MIB = 1024**2
DEFAULT_SIZE = 10 * 1024**3
# vSphere's limit for one virtual disk (62 TiB); a datastore may hold less.
MAX_SIZE = 62 * 1024**4
# diskformat → VirtualDiskManager's diskType.
DISK_TYPES = {"thin": "thin", "zeroedthick": "preallocated", "eagerzeroedthick": "eagerZeroedThick"}
DISK_MODES = {"persistent": "persistent", "independent_persistent": "independent_persistent"}
_DATASTORE = re.compile(r"[^\[\]/]{1,80}\Z")


class VsphereSettings(CloudSettings):
    url: str  # https://vcenter.example.com/sdk (http only for a test server)
    username: str
    password_file: str  # a file holding the password (0600), never the password itself
    ca_file: str | None = None  # CA bundle for the server's certificate
    verify: bool = True  # False: accept any certificate (a lab only)
    datacenter: str | None = None  # default: the only datacenter
    datastore: str  # where new volumes go unless a volume's `datastore` option says otherwise
    folder: str = "orlop-volumes"  # the folder of every volume on each datastore
    vm_uuid: str | None = None  # this VM's BIOS UUID; default /sys/class/dmi/id/product_uuid
    vm_name: str | None = None  # or this VM's name (inventory name, unique in the datacenter)
    dmi_uuid_file: str = "/sys/class/dmi/id/product_uuid"
    api_timeout: float = 60.0  # one SOAP or file request
    task_timeout: float = 600.0  # one vSphere task (create, clone, extend, reconfigure)

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        parts = value.strip("/").split("/")
        if not value.strip("/") or any(p in ("", ".", "..") or "[" in p for p in parts):
            raise ValueError("folder must be a relative path such as orlop-volumes")
        return value.strip("/")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+(/\S*)?\Z", value):
            raise ValueError("url must be http(s)://host[:port][/sdk]")
        return value


def canonical_mib_size(value: str) -> str:
    """A size rounded up to whole MiB, as bytes; at most vSphere's 62 TiB per disk."""
    size = bounded_size(value, MIB, MAX_SIZE, "a virtual disk")
    return str(math.ceil(size / MIB) * MIB)


def canonical_datastore(value: str) -> str:
    if not _DATASTORE.match(value):
        raise ValueError(f"{value!r} is not a datastore name (1-80 characters, no [ ] /)")
    return value


def canonical_volume_name(value: str) -> str:
    try:
        validate_name(value, "volume name")
    except OrlopError as error:
        raise ValueError(str(error)) from None
    return value


OPTIONS = OptionSet(
    [
        Option("size", canonical_mib_size, "disk size, rounded up to whole MiB (default 10G)"),
        Option(
            "diskformat",
            one_of(*DISK_TYPES),
            "thin (default), zeroedthick or eagerzeroedthick",
        ),
        Option("datastore", canonical_datastore, "datastore for the VMDK (default: settings)"),
        Option(
            "attach_as",
            one_of(*DISK_MODES),
            "disk mode: persistent (default, in VM snapshots) or independent_persistent",
        ),
        Option(
            "access",
            one_of("read-write", "read-only"),
            "read-write (default) or read-only: every mount of the volume is read-only",
        ),
        Option("clone_from", canonical_volume_name, "make the disk a copy of this volume"),
    ]
)
