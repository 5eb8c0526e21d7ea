"""Where an attached EBS volume shows up on this host, and which device name to ask for.

Real instances show an EBS volume one of two ways:

* Xen instances: the name given to AttachVolume, as /dev/xvdX (or /dev/sdX on old kernels).
* Nitro instances: an NVMe namespace (/dev/nvme1n1, …) whose serial is the volume ID; udev
  links it as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<ID without the dash>.
  The NVMe order has nothing to do with the requested name, so only the serial is trusted.

Both roots are settings, so tests can point discovery at a directory of symlinks.
"""

from __future__ import annotations

import os

from orlop.backends.cloud import devices

# AWS recommends /dev/sd[f-p] (shown as xvd[f-p]) for EBS data volumes on HVM instances.
DEVICE_LETTERS = "fghijklmnop"
NVME_PREFIX = "nvme-Amazon_Elastic_Block_Store_"


def nvme_link(by_id_dir: str, volume_id: str) -> str:
    return os.path.join(by_id_dir, NVME_PREFIX + volume_id.replace("-", ""))


def xen_paths(device_root: str, device_name: str) -> list[str]:
    """The paths a Xen kernel may use for AttachVolume's `device_name` (/dev/xvdf or /dev/sdf)."""
    base = os.path.basename(device_name)
    letters = base.removeprefix("xvd").removeprefix("sd")
    return [os.path.join(device_root, f"xvd{letters}"), os.path.join(device_root, f"sd{letters}")]


def candidate_paths(
    volume_id: str, device_name: str | None, device_root: str, by_id_dir: str
) -> list[str]:
    paths = [nvme_link(by_id_dir, volume_id)]
    if device_name:
        paths += xen_paths(device_root, device_name)
    return paths


def find_device(
    volume_id: str, device_name: str | None, device_root: str, by_id_dir: str
) -> str | None:
    """The block device of `volume_id` on this host, or None if it is not there (yet)."""
    return devices.find_device(candidate_paths(volume_id, device_name, device_root, by_id_dir))


def free_device_name(in_use: set[str], device_root: str) -> str | None:
    """A device name for AttachVolume that EC2 has not given out and this host does not show."""
    taken = {os.path.basename(name).removeprefix("xvd").removeprefix("sd") for name in in_use}
    for letter in DEVICE_LETTERS:
        if letter in taken:
            continue
        if any(os.path.lexists(path) for path in xen_paths(device_root, f"xvd{letter}")):
            continue
        return f"/dev/xvd{letter}"
    return None
