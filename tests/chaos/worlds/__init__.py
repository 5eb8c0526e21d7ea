"""The clouds a chaos run plays against (see `base.py` for what a world is)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.chaos.worlds.base import COMMON_SETTINGS, Disk, Host, World

PROVIDERS = ("ebs", "digitalocean", "gce", "cinder", "powerflex", "vsphere")

__all__ = ["COMMON_SETTINGS", "PROVIDERS", "Disk", "Host", "World", "open_world"]


def open_world(kind: str, stack: contextlib.ExitStack, root: Path) -> World:
    from tests.chaos.worlds import clouds
    from tests.chaos.worlds.digitalocean import DigitalOceanWorld
    from tests.chaos.worlds.ebs import EbsWorld

    if kind == "ebs":
        return EbsWorld(stack)
    if kind == "digitalocean":
        return DigitalOceanWorld(stack, root)
    worlds: dict[str, type[World]] = {
        "gce": clouds.GceWorld,
        "cinder": clouds.CinderWorld,
        "powerflex": clouds.PowerFlexWorld,
        "vsphere": clouds.VsphereWorld,
    }
    if kind in worlds:
        return worlds[kind](stack, root)  # type: ignore[call-arg]
    raise SystemExit(f"chaos: no world for provider {kind!r}; known: {', '.join(PROVIDERS)}")
