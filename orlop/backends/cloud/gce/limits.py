"""Persistent Disk and Hyperdisk types and their documented limits, checked before anything
is created (and before a resize).

Figures, as Google documents them (size in GiB, IOPS, throughput in MiB/s):
* "Persistent Disk" (cloud.google.com/compute/docs/disks/persistent-disks): pd-standard,
  pd-balanced and pd-ssd zonal disks are 10 GiB to 64 TiB; their performance follows the
  size, nothing is provisioned.
* "Extreme Persistent Disk" (…/disks/extreme-persistent-disk): 500 GiB to 64 TiB,
  provisioned IOPS 2,500 to 120,000.
* "About Hyperdisk" and "Hyperdisk performance limits" (…/disks/hyperdisks,
  …/disks/hyperdisk-perf-limits): hyperdisk-balanced 4 GiB to 64 TiB, IOPS 3,000 to
  160,000 and at most 500 per GiB (3,000 always allowed), throughput 140 to 2,400 MiB/s,
  at most IOPS / 4 and at least IOPS / 256; hyperdisk-throughput 2 TiB to 32 TiB,
  throughput 20 to 600 MiB/s, 10 to 90 MiB/s per TiB, no IOPS option;
  hyperdisk-extreme 64 GiB to 64 TiB, IOPS 2,500 to 350,000 and at most 1,000 per GiB.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from orlop.core.model import InvalidOption, OrlopError, validate_name
from orlop.core.options import GIB

DEFAULT_TYPE = "pd-balanced"
DEFAULT_SIZE_GIB = 10


@dataclass(frozen=True, slots=True)
class DiskType:
    name: str
    min_gib: int
    max_gib: int
    iops: tuple[int, int] | None = None  # (min, max) when the type takes provisioned_iops
    iops_per_gib: int | None = None  # the most IOPS one GiB may carry
    throughput: tuple[int, int] | None = None  # MiB/s, when it takes provisioned_throughput
    throughput_per_tib: tuple[int, int] | None = None  # MiB/s per TiB (hyperdisk-throughput)
    throughput_per_iops: tuple[int, int] | None = None  # IOPS/throughput: (lowest, highest)


DISK_TYPES: dict[str, DiskType] = {
    t.name: t
    for t in (
        DiskType("pd-balanced", 10, 65536),
        DiskType("pd-standard", 10, 65536),
        DiskType("pd-ssd", 10, 65536),
        DiskType("pd-extreme", 500, 65536, iops=(2500, 120000)),
        DiskType(
            "hyperdisk-balanced",
            4,
            65536,
            iops=(3000, 160000),
            iops_per_gib=500,
            throughput=(140, 2400),
            throughput_per_iops=(4, 256),
        ),
        DiskType(
            "hyperdisk-throughput", 2048, 32768, throughput=(20, 600), throughput_per_tib=(10, 90)
        ),
        DiskType("hyperdisk-extreme", 64, 65536, iops=(2500, 350000), iops_per_gib=1000),
    )
}

_SNAPSHOT_PATH = re.compile(
    r"(?:https?://[^/]+/compute/v1/)?(?:projects/[a-z][-a-z0-9.:]{0,62}[a-z0-9]/)?"
    r"global/snapshots/([a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)\Z"
)
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]\Z")
_KMS_KEY = re.compile(
    r"projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+"
    r"(?:/cryptoKeyVersions/[0-9]+)?\Z"
)


def canonical_count(value: str) -> str:
    if not value.strip().isdigit() or len(value.strip()) > 9:
        raise ValueError(f"{value!r} is not a whole number below 1000000000")
    return str(int(value))


def canonical_zone(value: str) -> str:
    if not _ZONE.match(value):
        raise ValueError(f"{value!r} is not a Compute Engine zone name (e.g. us-central1-a)")
    return value


def canonical_kms_key(value: str) -> str:
    if not _KMS_KEY.match(value):
        raise ValueError(
            f"{value!r} is not a Cloud KMS key: use projects/P/locations/L/keyRings/R/cryptoKeys/K"
        )
    return value


def snapshot_name_of(value: str) -> str | None:
    """The snapshot's Compute Engine name if `value` is a snapshot path
    (global/snapshots/NAME, projects/P/global/snapshots/NAME or its URL), else None."""
    match = _SNAPSHOT_PATH.match(value)
    return match.group(1) if match else None


def canonical_snapshot(value: str) -> str:
    """A Compute Engine snapshot (global/snapshots/NAME) or the name of an Orlop snapshot."""
    name = snapshot_name_of(value)
    if name is not None:
        return f"global/snapshots/{name}"
    if "/" in value:
        raise ValueError(
            f"{value!r} is not a snapshot: use global/snapshots/NAME or an Orlop snapshot name"
        )
    try:
        return validate_name(value, "snapshot name")
    except OrlopError as error:
        raise ValueError(str(error)) from None


def default_size_gib(disk_type: str) -> int:
    return max(DEFAULT_SIZE_GIB, DISK_TYPES[disk_type].min_gib)


def check_disk_options(options: Mapping[str, str]) -> None:
    """Raise InvalidOption unless size, IOPS and throughput fit the disk type's limits."""
    kind = DISK_TYPES[options.get("type", DEFAULT_TYPE)]
    size = int(options["size"]) // GIB if "size" in options else None
    if size is not None and not kind.min_gib <= size <= kind.max_gib:
        raise InvalidOption(
            f"size {size} GiB is outside what type {kind.name} allows: "
            f"{kind.min_gib} to {kind.max_gib} GiB"
        )
    effective = size if size is not None else default_size_gib(kind.name)
    iops = _check_iops(kind, options, effective)
    _check_throughput(kind, options, effective, iops)


def _takers(attribute: str) -> str:
    return ", ".join(t.name for t in DISK_TYPES.values() if getattr(t, attribute))


def _check_iops(kind: DiskType, options: Mapping[str, str], size: int) -> int | None:
    if "provisioned_iops" not in options:
        return None
    if kind.iops is None:
        raise InvalidOption(
            f"type {kind.name} takes no provisioned_iops: only {_takers('iops')} do"
        )
    iops = int(options["provisioned_iops"])
    low, high = kind.iops
    if not low <= iops <= high:
        raise InvalidOption(
            f"provisioned_iops {iops} is outside what type {kind.name} allows: {low} to {high}"
        )
    if kind.iops_per_gib and iops > max(low, size * kind.iops_per_gib):
        raise InvalidOption(
            f"provisioned_iops {iops} is too many for {size} GiB of {kind.name}: at most "
            f"{kind.iops_per_gib} per GiB ({max(low, size * kind.iops_per_gib)}); "
            "ask for a bigger size or fewer IOPS"
        )
    return iops


def _check_throughput(
    kind: DiskType, options: Mapping[str, str], size: int, iops: int | None
) -> None:
    if "provisioned_throughput" not in options:
        return
    if kind.throughput is None:
        raise InvalidOption(
            f"type {kind.name} takes no provisioned_throughput: only {_takers('throughput')} do"
        )
    throughput = int(options["provisioned_throughput"])
    low, high = kind.throughput
    if not low <= throughput <= high:
        raise InvalidOption(
            f"provisioned_throughput {throughput} MiB/s is outside what type {kind.name} "
            f"allows: {low} to {high} MiB/s"
        )
    if kind.throughput_per_tib:
        per_low, per_high = kind.throughput_per_tib
        tib = size / 1024
        if not per_low * tib <= throughput <= per_high * tib:
            raise InvalidOption(
                f"provisioned_throughput {throughput} MiB/s does not fit {size} GiB of "
                f"{kind.name}: {per_low} to {per_high} MiB/s per TiB "
                f"({math.ceil(per_low * tib)} to {int(per_high * tib)} MiB/s)"
            )
    if kind.throughput_per_iops and iops is not None:
        most, least = kind.throughput_per_iops  # throughput ≤ IOPS/4 and ≥ IOPS/256
        if throughput > iops / most or throughput < iops / least:
            raise InvalidOption(
                f"provisioned_throughput {throughput} MiB/s does not fit provisioned_iops "
                f"{iops} on {kind.name}: between IOPS/{least} and IOPS/{most} MiB/s"
            )
