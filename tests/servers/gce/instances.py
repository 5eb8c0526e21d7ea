"""The GCE test server's instance, snapshot and operation methods (see `gce_disks.py`)."""

from __future__ import annotations

import re
from typing import Any

from tests.servers.gce import images as gce_images
from tests.servers.gce.disks import (
    NAME_RE,
    find_disk,
    find_snapshot,
    fingerprint,
    handles,
    in_use,
    last,
    matches,
    present,
    start_operation,
)
from tests.servers.gce.ops import ApiError, now
from tests.servers.gce.server import GceServer


@handles("compute.instances.get")
def instances_get(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    return server.instance_resource(
        p["project"], server.instance(p["project"], p["zone"], p["instance"])
    )


@handles("compute.instances.attachDisk")
def instances_attach(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    project, zone = p["project"], p["zone"]
    instance = server.instance(project, zone, p["instance"])
    source = body.get("source", "")
    found = re.search(r"projects/([^/]+)/zones/([^/]+)/disks/([^/]+)\Z", source)
    if not found:
        raise ApiError(400, "invalid", f"Invalid value for field 'resource.source': '{source}'.")
    if found.group(2) != zone:
        raise ApiError(
            400, "invalid", f"Disk '{source}' is in another zone than instance '{instance.name}'."
        )
    disk = find_disk(server, found.group(1), zone, found.group(3))
    if disk["status"] != "READY":
        raise ApiError(400, "resourceNotReady", f"The resource '{source}' is not ready")
    mode = body.get("mode", "READ_WRITE")
    holders = [last(u) for u in disk.get("users", [])] + sorted(
        server.pending.get((zone, disk["name"]), ())
    )
    if holders and mode == "READ_WRITE":  # READ_WRITE is exclusive: Compute Engine refuses
        raise in_use(server, disk, holders[0])
    device = body.get("deviceName") or f"persistent-disk-{len(instance.disks) + 1}"
    if not NAME_RE.match(device) or any(d["deviceName"] == device for d in instance.disks):
        raise ApiError(
            400, "invalid", f"Invalid value for field 'resource.deviceName': '{device}'."
        )
    server.pending.setdefault((zone, disk["name"]), set()).add(instance.name)

    def attached() -> Any:
        server.pending.get((zone, disk["name"]), set()).discard(instance.name)
        if (zone, disk["name"]) not in server.disks:
            raise ApiError(
                404, "notFound", f"The resource '{source}' was not found", "RESOURCE_NOT_FOUND"
            )
        instance.disks.append(
            {
                "kind": "compute#attachedDisk",
                "type": "PERSISTENT",
                "mode": mode,
                "source": disk["selfLink"],
                "deviceName": device,
                "index": len(instance.disks) + 1,
                "boot": False,
                "autoDelete": bool(body.get("autoDelete", False)),
                "interface": instance.interface,
                "diskSizeGb": disk["sizeGb"],
            }
        )
        disk.setdefault("users", []).append(server.url(f"zones/{zone}/instances/{instance.name}"))
        disk["lastAttachTimestamp"] = now()
        return present(server, disk)

    return start_operation(
        server,
        "attachDisk",
        server.url(f"zones/{zone}/instances/{instance.name}"),
        f"zones/{zone}",
        attached,
    )


@handles("compute.instances.detachDisk")
def instances_detach(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    project, zone = p["project"], p["zone"]
    instance = server.instance(project, zone, p["instance"])
    device = (q.get("deviceName") or [""])[0]
    attached = next((d for d in instance.disks if d["deviceName"] == device), None)
    if attached is None:
        raise ApiError(
            400,
            "invalid",
            f"Invalid value for field 'deviceName': '{device}'. No attached disk "
            f"found with device name '{device}'",
        )

    def detached() -> Any:
        if attached in instance.disks:
            instance.disks.remove(attached)
        disk = next((d for d in server.disks.values() if d["selfLink"] == attached["source"]), None)
        if disk is None:
            return None
        me = server.url(f"zones/{zone}/instances/{instance.name}")
        disk["users"] = [u for u in disk.get("users", []) if u != me]
        if not disk["users"]:
            del disk["users"]
        disk["lastDetachTimestamp"] = now()
        if server.presenter is not None and instance.by_id_dir is not None:
            presenter, key = server.presenter, disk["id"]
            return lambda: presenter.hide(key)
        return None

    return start_operation(
        server,
        "detachDisk",
        server.url(f"zones/{zone}/instances/{instance.name}"),
        f"zones/{zone}",
        detached,
    )


def _new_snapshot(
    server: GceServer, disk: dict[str, Any], body: dict[str, Any], scope: str
) -> dict[str, Any]:
    name = body.get("name", "")
    if not NAME_RE.match(name):
        raise ApiError(400, "invalid", f"Invalid value for field 'resource.name': '{name}'.")
    if name in server.snapshots:
        raise ApiError(
            409,
            "alreadyExists",
            f"The resource 'projects/{server.project}/global/snapshots/{name}' already exists",
        )
    snapshot: dict[str, Any] = {
        "kind": "compute#snapshot",
        "id": server.next_id(),
        "creationTimestamp": now(),
        "name": name,
        "status": "CREATING",
        "sourceDisk": disk["selfLink"],
        "sourceDiskId": disk["id"],
        "diskSizeGb": disk["sizeGb"],
        "storageBytes": "0",
        "labels": dict(body.get("labels", {})),
        "labelFingerprint": fingerprint(),
        "selfLink": server.url(f"global/snapshots/{name}"),
        "storageLocations": ["us"],
    }
    server.snapshots[name] = snapshot

    gce_images.keep(server.presenter, disk["id"], snapshot["id"])  # its bytes as of now

    def ready() -> None:
        snapshot.update(status="READY", storageBytes=str(int(disk["sizeGb"]) * 1024**3 // 10))

    return start_operation(server, "createSnapshot", snapshot["selfLink"], scope, ready)


@handles("compute.disks.createSnapshot")
def disks_snapshot(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    zone = server.zone_of(p["project"], p["zone"])
    return _new_snapshot(
        server, find_disk(server, p["project"], zone, p["disk"]), body, f"zones/{zone}"
    )


@handles("compute.snapshots.insert")
def snapshots_insert(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    found = re.search(r"zones/([^/]+)/disks/([^/]+)\Z", body.get("sourceDisk", ""))
    if not found:
        raise ApiError(400, "invalid", "Invalid value for field 'resource.sourceDisk'.")
    disk = find_disk(server, p["project"], found.group(1), found.group(2))
    return _new_snapshot(server, disk, body, "global")


@handles("compute.snapshots.get")
def snapshots_get(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    return find_snapshot(server, p["project"], p["snapshot"])


@handles("compute.snapshots.list")
def snapshots_list(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    return {
        "kind": "compute#snapshotList",
        "id": f"projects/{p['project']}/global/snapshots",
        "items": [s for _, s in sorted(server.snapshots.items()) if matches(s, q)],
        "selfLink": server.url("global/snapshots", p["project"]),
    }


@handles("compute.snapshots.delete")
def snapshots_delete(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    snapshot = find_snapshot(server, p["project"], p["snapshot"])
    snapshot["status"] = "DELETING"

    def deleted() -> Any:
        server.snapshots.pop(snapshot["name"], None)
        presenter, snapshot_id = server.presenter, snapshot["id"]
        return lambda: gce_images.drop(presenter, snapshot_id)

    return start_operation(server, "delete", snapshot["selfLink"], "global", deleted)


# operations ------------------------------------------------------------------------------
@handles("compute.zoneOperations.get")
@handles("compute.globalOperations.get")
def operations_get(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    return server.clock.get(p["operation"])


@handles("compute.zoneOperations.wait")
@handles("compute.globalOperations.wait")
def operations_wait(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    return server.clock.wait(p["operation"])
