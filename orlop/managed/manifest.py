"""The `config.json` of a managed plugin: what Docker grants it and how it starts it.

What a kind needs is read from what it runs (`PluginKind.tools()`, from its doctor checks):

* every kind mounts (the volumes themselves, tmpfs, FUSE): `CAP_SYS_ADMIN`;
* a block kind (it runs `blkid`/`losetup`) sees the host's disks and loop devices: all
  devices allowed, `/dev` bound from the host (loop and cloud disks appear there after the
  plugin started), and `CAP_SYS_RESOURCE` so ext4 grows online;
* a FUSE kind (it runs `fusermount3`, or checks for `/dev/fuse`) gets `/dev/fuse`;
* `network.type host` for every kind: cloud APIs, metadata servers, SSH and S3 endpoints.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from orlop.core.model import ConfigError
from orlop.managed.kinds import KIND_VARIABLE, LOG_LEVEL_VARIABLE, PluginKind
from orlop.managed.paths import PLUGIN_DIR, STATE_DIR

ENTRYPOINT = ["/usr/bin/python3", "-m", "orlop.managed.start"]
# Docker hands a plugin no environment but config.json's: the tools live in the sbin dirs.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BLOCK_TOOLS = frozenset({"blkid", "losetup"})
FUSE_TOOLS = frozenset({"fusermount3", "fusermount"})
# The `metrics` setting (config.py reads ORLOP_METRICS in plugin mode too); empty: off.
METRICS_VARIABLE = "ORLOP_METRICS"
METRICS_DESCRIPTION = (
    "Prometheus /metrics and /healthz: HOST:PORT on the host's network (127.0.0.1:9450), or "
    f"a socket path under {PLUGIN_DIR}/ (on the host: {PLUGIN_DIR}/<plugin id>/); empty: off"
)


def needs_block_devices(kind: PluginKind) -> bool:
    return bool(BLOCK_TOOLS & set(kind.tools()))


def needs_fuse(kind: PluginKind) -> bool:
    return bool(FUSE_TOOLS & set(kind.tools())) or "device /dev/fuse" in kind.check_names()


def manifest(kind: PluginKind, version: str, drop: Collection[str] = frozenset()) -> dict[str, Any]:
    """The plugin's config.json (Docker's plugin config format, version 1).

    `drop` leaves capabilities out, for engines whose bounding set lacks them (runc then
    refuses to start the plugin at all): some sandboxes drop CAP_SYS_RESOURCE.
    """
    block = needs_block_devices(kind)
    wanted = ["CAP_SYS_ADMIN"] + (["CAP_SYS_RESOURCE"] if block else [])
    malformed = sorted(cap for cap in drop if not re.fullmatch(r"CAP_[A-Z_]+", cap))
    if malformed:
        raise ConfigError(f"not a capability name: {', '.join(malformed)} (e.g. CAP_SYS_RESOURCE)")
    if "CAP_SYS_ADMIN" in drop:
        raise ConfigError("cannot drop CAP_SYS_ADMIN: every plugin kind mounts filesystems")
    # Dropping what a kind does not ask for is nothing: one build flag serves every kind.
    capabilities = [cap for cap in wanted if cap not in drop]
    mounts = []
    if block:
        mounts.append(
            {
                "name": "dev",
                "description": "the host's block devices, loop devices included",
                "source": "/dev",
                "destination": "/dev",
                "type": "bind",
                "options": ["rbind"],
            }
        )
    return {
        "description": f"Orlop {kind.name} volumes ({kind.backend} backend), version {version}",
        "documentation": "README.md of Orlop, section 'Managed plugin'",
        "entrypoint": ENTRYPOINT,
        "workdir": "/",
        "interface": {"types": ["docker.volumedriver/1.0"], "socket": kind.socket},
        "network": {"type": "host"},
        "propagatedMount": STATE_DIR,
        "mounts": mounts,
        "linux": {
            "capabilities": capabilities,
            "allowAllDevices": block,
            "devices": [{"path": "/dev/fuse"}] if needs_fuse(kind) else [],
        },
        "env": environment(kind),
    }


def environment(kind: PluginKind) -> list[dict[str, Any]]:
    fixed = [
        _env(KIND_VARIABLE, "the driver kind this plugin was built for", kind.name, False),
        _env("PATH", "where Orlop finds the tools it runs", PATH, False),
        _env(LOG_LEVEL_VARIABLE, "Orlop's log level: debug, info, warning or error", "info", True),
        _env(METRICS_VARIABLE, METRICS_DESCRIPTION, "", True),
    ]
    return fixed + [
        _env(variable.name, variable.description, variable.value, True)
        for variable in kind.variables()
    ]


def _env(name: str, description: str, value: str, settable: bool) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "settable": ["value"] if settable else [],
        "value": value,
    }
