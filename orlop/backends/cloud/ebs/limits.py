"""EBS volume types and their documented limits, checked before anything is created.

Figures from the AWS EBS user guide ("Amazon EBS volume types"): size in GiB, IOPS, and
throughput in MiB/s. Only gp3 takes `throughput`; gp3, io1 and io2 take `iops` (io1 and io2
require it); gp2, st1 and sc1 take neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orlop.core.model import InvalidOption, OrlopError, validate_name
from orlop.core.options import GIB


@dataclass(frozen=True, slots=True)
class VolumeType:
    name: str
    min_gib: int
    max_gib: int
    iops: tuple[int, int] | None = None  # (min, max) when the type takes `iops`
    iops_required: bool = False
    iops_per_gib: int | None = None  # the most IOPS one GiB may carry
    throughput: tuple[int, int] | None = None  # MiB/s, when the type takes `throughput`
    throughput_per_iops: float | None = None  # the most MiB/s one provisioned IOPS carries


VOLUME_TYPES: dict[str, VolumeType] = {
    t.name: t
    for t in (
        VolumeType("gp3", 1, 65536, (3000, 80000), False, 500, (125, 2000), 0.25),
        VolumeType("gp2", 1, 16384),
        VolumeType("io1", 4, 16384, (100, 64000), True, 50),
        VolumeType("io2", 4, 65536, (100, 256000), True, 1000),
        VolumeType("st1", 125, 16384),
        VolumeType("sc1", 125, 16384),
    )
}
DEFAULT_TYPE = "gp3"
DEFAULT_SIZE_GIB = 10
GP3_BASELINE_IOPS = 3000

_SNAPSHOT_ID = re.compile(r"snap-[0-9a-f]{8,17}\Z")
_ZONE = re.compile(r"[a-z]{2}(-[a-z0-9]+)+[a-z]\Z")
_KMS = re.compile(r"[A-Za-z0-9:/_.+=@-]{1,2048}\Z")


def canonical_count(value: str) -> str:
    if not value.strip().isdigit():
        raise ValueError(f"{value!r} is not a whole number")
    return str(int(value))


def canonical_zone(value: str) -> str:
    if not _ZONE.match(value):
        raise ValueError(f"{value!r} is not an availability zone name (e.g. us-east-1a)")
    return value


def canonical_kms_key(value: str) -> str:
    if not _KMS.match(value):
        raise ValueError(f"{value!r} is not a KMS key ID, alias or ARN")
    return value


def canonical_snapshot(value: str) -> str:
    """A snapshot ID (snap-…) or the name of an Orlop snapshot."""
    if value.startswith("snap-"):
        if not _SNAPSHOT_ID.match(value):
            raise ValueError(f"{value!r} is not a snapshot ID: snap- and 8 or 17 hex digits")
        return value
    try:
        return validate_name(value, "snapshot name")
    except OrlopError as error:
        raise ValueError(str(error)) from None


def requested_gib(options: dict[str, str]) -> int | None:
    return int(options["size"]) // GIB if "size" in options else None


def check_volume_options(options: dict[str, str]) -> None:
    """Raise InvalidOption unless size, iops and throughput fit the volume type's limits."""
    kind = VOLUME_TYPES[options.get("type", DEFAULT_TYPE)]
    size = requested_gib(options)
    if size is not None and not kind.min_gib <= size <= kind.max_gib:
        raise InvalidOption(
            f"size {size} GiB is outside what type {kind.name} allows: "
            f"{kind.min_gib} to {kind.max_gib} GiB"
        )
    _check_iops(kind, options, size)
    _check_throughput(kind, options)
    if "kms_key_id" in options and options.get("encrypted") != "true":
        raise InvalidOption("kms_key_id needs encrypted=true")


def _check_iops(kind: VolumeType, options: dict[str, str], size: int | None) -> None:
    takers = ", ".join(t.name for t in VOLUME_TYPES.values() if t.iops)
    if "iops" not in options:
        if kind.iops_required:
            low, high = kind.iops or (0, 0)
            raise InvalidOption(f"type {kind.name} needs iops: {low} to {high}")
        return
    if kind.iops is None:
        raise InvalidOption(f"type {kind.name} takes no iops option: only {takers} do")
    iops = int(options["iops"])
    low, high = kind.iops
    if not low <= iops <= high:
        raise InvalidOption(f"iops {iops} is outside what type {kind.name} allows: {low} to {high}")
    effective_size = size if size is not None else max(DEFAULT_SIZE_GIB, kind.min_gib)
    if kind.iops_per_gib and iops > max(low, effective_size * kind.iops_per_gib):
        raise InvalidOption(
            f"iops {iops} is too many for {effective_size} GiB of {kind.name}: at most "
            f"{kind.iops_per_gib} IOPS per GiB ({effective_size * kind.iops_per_gib}); "
            "ask for a bigger size or fewer iops"
        )


def _check_throughput(kind: VolumeType, options: dict[str, str]) -> None:
    if "throughput" not in options:
        return
    if kind.throughput is None:
        raise InvalidOption(f"type {kind.name} takes no throughput option: only gp3 does")
    throughput = int(options["throughput"])
    low, high = kind.throughput
    if not low <= throughput <= high:
        raise InvalidOption(
            f"throughput {throughput} MiB/s is outside what type {kind.name} allows: "
            f"{low} to {high} MiB/s"
        )
    iops = int(options.get("iops", GP3_BASELINE_IOPS))
    if kind.throughput_per_iops and throughput > max(low, iops * kind.throughput_per_iops):
        raise InvalidOption(
            f"throughput {throughput} MiB/s needs more iops: gp3 allows at most "
            f"{kind.throughput_per_iops} MiB/s per provisioned IOPS ({iops} iops → "
            f"{int(iops * kind.throughput_per_iops)} MiB/s)"
        )


def default_size_gib(volume_type: str) -> int:
    return max(DEFAULT_SIZE_GIB, VOLUME_TYPES[volume_type].min_gib)
