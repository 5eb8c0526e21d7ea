"""How Orlop marks its Azure file shares: metadata naming the Docker volume a share holds.

A share Orlop made carries `orlop_volume=<name>`; Remove that keeps it (the default)
replaces that with `orlop_kept=<name>`, so no host's discovery takes it in again, while a
Create of the same name on purpose takes it back. A share whose name is not the one
`share_name(volume)` gives is never counted as the volume's.
"""

from __future__ import annotations

from typing import Any

from orlop.backends.share.naming import share_name

METADATA_VOLUME = "orlop_volume"  # the Docker name of the volume a share holds
METADATA_KEPT = "orlop_kept"  # instead, once Remove kept it (keep_on_remove): not adopted again


def made(volume: str) -> dict[str, str]:
    """The metadata of a share made (or taken back) for `volume`."""
    return {METADATA_VOLUME: volume}


def kept(volume: str) -> dict[str, str]:
    """The metadata of a share Remove kept."""
    return {METADATA_KEPT: volume}


def owner(metadata: dict[str, str]) -> str | None:
    """The volume a share holds or held (kept), or None: not Orlop's."""
    return metadata.get(METADATA_VOLUME) or metadata.get(METADATA_KEPT)


def is_kept(metadata: dict[str, str]) -> bool:
    """Kept by a Remove, and not taken back since."""
    return METADATA_KEPT in metadata and METADATA_VOLUME not in metadata


def volume_in(share: dict[str, Any]) -> str | None:
    """The volume a listed share holds (for discovery): never a kept one."""
    volume = share["metadata"].get(METADATA_VOLUME)
    return volume if volume and share_name(volume) == share["name"] else None
