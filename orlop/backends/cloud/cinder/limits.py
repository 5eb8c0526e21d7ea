"""What a Cinder volume may ask for: a volume type and an availability zone this cloud has,
a size no smaller than the volume's source."""

from __future__ import annotations

from typing import Any

from orlop.backends.cloud.cinder.client import translated
from orlop.core.model import InvalidOption
from orlop.core.options import GIB

DEFAULT_SIZE = 10 * GIB


def check_type(conn: Any, name: str | None) -> None:
    if name is None:
        return
    with translated("listing Cinder volume types"):
        known = [t.name for t in conn.block_storage.types()]
    if name not in known:
        raise InvalidOption(
            f"unknown Cinder volume type {name!r}: this cloud has {', '.join(sorted(known))}"
        )


def check_zone(conn: Any, zone: str | None) -> None:
    if zone is None:
        return
    with translated("listing Cinder availability zones"):
        zones = [z.name for z in conn.block_storage.availability_zones()]
    if zone not in zones:
        raise InvalidOption(
            f"unknown Cinder availability zone {zone!r}: this cloud has {', '.join(sorted(zones))}"
        )


def at_least(size: int | None, minimum: int, source: str) -> int:
    if size is not None and size < minimum:
        raise InvalidOption(
            f"size {size // GIB}G is smaller than {source} ({minimum // GIB}G): "
            "leave size out or ask for at least that"
        )
    return size if size is not None else minimum
