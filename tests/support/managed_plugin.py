"""Build Orlop's `block` managed plugin for tests, through `scripts/build-plugin` as a user
would, with the root filesystem cached across sessions under /var/cache/orlop-test."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import time
from pathlib import Path

from orlop.host import loop
from tests.support.dockerd import Dockerd

ROOT = Path(__file__).resolve().parents[2]
CACHE = "/var/cache/orlop-test/plugin"
# A cold build is debootstrap (minutes on a loaded machine) + pip; warm, a copy and a create.
BUILD_TIMEOUT = 1800
# Where a block plugin keeps its images, as the kernel reports a loop device's backing file.
IMAGES = "/var/lib/orlop/drivers/block/images"


def build_plugin(dockerd: Dockerd, name: str, kind: str = "block") -> str:
    """`scripts/build-plugin KIND --name NAME` on `dockerd`; the name it printed last."""
    args = [str(ROOT / "scripts" / "build-plugin"), kind, "--name", name, "--cache-dir", CACHE]
    # No --drop-capability: the builder notices by itself when the bounding set lacks one.
    result = subprocess.run(
        args, capture_output=True, text=True, env=dockerd.env, timeout=BUILD_TIMEOUT
    )
    if result.returncode != 0:
        raise AssertionError(f"build-plugin failed:\n{result.stderr[-4000:]}{result.stdout}")
    return result.stdout.strip().splitlines()[-1]


def enable(dockerd: Dockerd, name: str) -> float:
    started = time.monotonic()
    dockerd.run("plugin", "enable", name, timeout=180)
    return time.monotonic() - started


def plugin_id(dockerd: Dockerd, name: str) -> str:
    return dockerd.run("plugin", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def plugin_socket(dockerd: Dockerd, name: str, socket: str) -> str:
    """A socket of the plugin, seen from the host. Every dockerd, whatever its --exec-root,
    binds /run/docker/plugins/<plugin id> into its plugins as /run/docker/plugins."""
    return f"/run/docker/plugins/{plugin_id(dockerd, name)}/{socket}"


def build_stamp(dockerd: Dockerd, name: str) -> dict[str, object]:
    """The stamp build-plugin writes into each build's root filesystem."""
    path = dockerd.root / "data" / "plugins" / plugin_id(dockerd, name) / "rootfs"
    stamp: dict[str, object] = json.loads((path / "etc" / "orlop-plugin.json").read_text())
    return stamp


def rootfs_bytes(dockerd: Dockerd, name: str) -> int:
    """The size of the plugin's root filesystem as `dockerd` holds it (files and links)."""
    path = dockerd.root / "data" / "plugins" / plugin_id(dockerd, name) / "rootfs"
    total = 0
    for directory, _, files in os.walk(path):
        for file in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, file)).st_size
    assert total > 10_000_000, f"{path} holds {total} bytes: not a root filesystem"
    return total


def volumes_of(dockerd: Dockerd, driver: str) -> set[str]:
    """Volumes of one driver (other test runs' legacy plugin sockets add their own)."""
    out = dockerd.run("volume", "ls", "-q", "--filter", f"driver={driver}").stdout
    return set(out.split())


def release_loop_devices(volumes: set[str]) -> None:
    """Detach loop devices of these (uniquely named) volumes that a killed plugin left."""
    wanted = {f"{IMAGES}/{name}.img" for name in volumes}
    for entry in glob.glob("/sys/block/loop*/loop/backing_file"):
        with contextlib.suppress(OSError), open(entry) as file:
            backing = file.read().strip().removesuffix(" (deleted)")
        if backing in wanted:
            with contextlib.suppress(Exception):
                loop.detach(os.path.join("/dev", entry.split("/")[3]))
