"""A managed plugin that Docker Swarm uses as a CSI driver (`scripts/build-plugin KIND --csi`).

The same root filesystem and entry point as the volume plugin; its config.json differs:
* interface types `docker.csicontroller/1.0` and `docker.csinode/1.0` on socket `csi.sock`,
  which `CSI_ENDPOINT` names inside the plugin (Docker binds the host's plugin directory
  at /run/docker/plugins);
* `propagatedMount` /data/published: Swarm's NodePublish targets, which containers then bind;
  NodeStage's paths (/data/staged) and Orlop's own mounts stay in the plugin's namespace;
* `ORLOP_CSI_NODE_ID` settable: the node ID (default: the provider's identity of the host,
  else its hostname; several engines on one machine each need their own);
* `ORLOP_CSI_STAGE_WAIT` settable: csi.stage_wait (seconds).
"""

from __future__ import annotations

import copy
from typing import Any

CSI_SOCKET = "csi.sock"
CSI_TYPES = ["docker.csicontroller/1.0", "docker.csinode/1.0"]
PUBLISHED = "/data/published"


def csi_manifest(volume_plugin: dict[str, Any]) -> dict[str, Any]:
    """The CSI plugin's config.json, made from the volume plugin's of the same kind."""
    config = copy.deepcopy(volume_plugin)
    config["description"] = f"{config['description']} (CSI)"
    config["interface"] = {"types": list(CSI_TYPES), "socket": CSI_SOCKET}
    config["propagatedMount"] = PUBLISHED
    capabilities = config["linux"]["capabilities"]
    if "CAP_SYS_ADMIN" not in capabilities:
        capabilities.insert(0, "CAP_SYS_ADMIN")
    config["env"] = [
        *config["env"],
        {
            "name": "CSI_ENDPOINT",
            "description": "the CSI socket Orlop serves (Docker connects to it)",
            "settable": [],
            "value": f"unix:///run/docker/plugins/{CSI_SOCKET}",
        },
        {
            "name": "ORLOP_CSI_NODE_ID",
            "description": "this node's CSI node ID (empty: the provider's host ID, or hostname)",
            "settable": ["value"],
            "value": "",
        },
        {
            "name": "ORLOP_CSI_STAGE_WAIT",
            "description": "seconds NodeStage waits for another node to let go of a disk "
            "moving here, before answering ABORTED (Swarm retries)",
            "settable": ["value"],
            "value": "10",
        },
    ]
    return config
