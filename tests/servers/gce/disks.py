"""The GCE test server's methods, one function per Compute v1 method by ID: zones and disks
here, instances, snapshots and operations in `gce_instances.py`."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from typing import Any

from tests.servers.gce import images as gce_images
from tests.servers.gce.ops import ApiError, now
from tests.servers.gce.server import (
    DISK_TYPE_SIZES,
    TAKES_IOPS,
    TAKES_THROUGHPUT,
    ZONES,
    GceServer,
    Instance,
)

Handler = Callable[[GceServer, dict[str, str], dict[str, list[str]], Any], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}
NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
_TERM = re.compile(r'\s*\(?\s*([a-zA-Z][\w.-]*)\s*(=|!=|eq|ne)\s*"?([^")]*)"?\s*\)?\s*')


def handles(method_id: str) -> Callable[[Handler], Handler]:
    def register(function: Handler) -> Handler:
        HANDLERS[method_id] = function
        return function

    return register


def last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def fingerprint() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode()


def _disk_path(project: str, zone: str, name: str) -> str:
    return f"projects/{project}/zones/{zone}/disks/{name}"


def matches(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """The subset of list filters Orlop sends: `(labels.K = "V") AND (name = "N") …`."""
    text = (query.get("filter") or [""])[0].strip()
    if not text:
        return True
    for term in re.split(r"\s+AND\s+", text):
        found = _TERM.fullmatch(term)
        if not found:
            raise ApiError(400, "invalid", f"Invalid value for field 'filter': '{text}'.")
        field, op, value = found.groups()
        if field.startswith("labels."):
            actual = resource.get("labels", {}).get(field[len("labels.") :])
        else:
            actual = resource.get(field)
        if (actual == value) != (op in ("=", "eq")):
            return False
    return True


def find_disk(server: GceServer, project: str, zone: str, name: str) -> dict[str, Any]:
    found = server.disks.get((server.zone_of(project, zone), name))
    if found is None or project != server.project:
        raise ApiError(
            404, "notFound", f"The resource '{_disk_path(project, zone, name)}' was not found"
        )
    return found


def in_use(server: GceServer, disk: dict[str, Any], holder: str) -> ApiError:
    zone = last(disk["zone"])
    return ApiError(
        400,
        "resourceInUseByAnotherResource",
        f"The disk resource '{_disk_path(server.project, zone, disk['name'])}' is already being "
        f"used by 'projects/{server.project}/zones/{zone}/instances/{holder}'",
        "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
    )


def start_operation(
    server: GceServer, kind: str, target: str, scope: str, effect: Any
) -> dict[str, Any]:
    return server.clock.start(
        kind, target, server.base, f"projects/{server.project}/{scope}", effect
    )


# zones -----------------------------------------------------------------------------------
@handles("compute.zones.get")
def zones_get(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    return server.zone_resource(p["project"], server.zone_of(p["project"], p["zone"]))


@handles("compute.zones.list")
def zones_list(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    items = [server.zone_resource(p["project"], zone) for zone in ZONES]
    return {
        "kind": "compute#zoneList",
        "id": f"projects/{p['project']}/zones",
        "items": [z for z in items if matches(z, q)],
        "selfLink": server.url("zones", p["project"]),
    }


# disks -----------------------------------------------------------------------------------
@handles("compute.disks.get")
def disks_get(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    return find_disk(server, p["project"], p["zone"], p["disk"])


@handles("compute.disks.list")
def disks_list(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    zone = server.zone_of(p["project"], p["zone"])
    items = [d for (z, _), d in sorted(server.disks.items()) if z == zone and matches(d, q)]
    return {
        "kind": "compute#diskList",
        "id": f"projects/{p['project']}/zones/{zone}/disks",
        "items": items,
        "selfLink": server.url(f"zones/{zone}/disks", p["project"]),
    }


@handles("compute.disks.aggregatedList")
def disks_aggregated(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    items: dict[str, Any] = {}
    for (zone, _), disk in sorted(server.disks.items()):
        if matches(disk, q):
            items.setdefault(f"zones/{zone}", {"disks": []})["disks"].append(disk)
    return {
        "kind": "compute#diskAggregatedList",
        "id": f"projects/{p['project']}/aggregated/disks",
        "items": items,
        "selfLink": server.url("aggregated/disks", p["project"]),
    }


def _check_new_disk(server: GceServer, zone: str, body: dict[str, Any]) -> tuple[str, int]:
    name = body.get("name", "")
    if not NAME_RE.match(name):
        raise ApiError(
            400,
            "invalid",
            f"Invalid value for field 'resource.name': '{name}'. Must be a match "
            "of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
        )
    disk_type = last(body.get("type", "pd-standard"))
    if disk_type not in DISK_TYPE_SIZES or f"zones/{zone}/" not in body.get(
        "type", f"zones/{zone}/"
    ):
        raise ApiError(
            400,
            "invalid",
            f"Invalid value for field 'resource.type': '{body.get('type')}'. "
            "Disk type does not exist or is not in this zone.",
        )
    low, high = DISK_TYPE_SIZES[disk_type]
    size = int(body.get("sizeGb", low))
    if not low <= size <= high:
        raise ApiError(
            400,
            "invalid",
            f"Invalid value for field 'resource.sizeGb': '{size}'. Disk size "
            f"must be between {low} GB and {high} GB for {disk_type}.",
        )
    if "provisionedIops" in body and disk_type not in TAKES_IOPS:
        raise ApiError(400, "invalid", f"Provisioned IOPS is not supported for {disk_type}.")
    if "provisionedThroughput" in body and disk_type not in TAKES_THROUGHPUT:
        raise ApiError(400, "invalid", f"Provisioned throughput is not supported for {disk_type}.")
    return disk_type, size


@handles("compute.disks.insert")
def disks_insert(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    project, zone = p["project"], server.zone_of(p["project"], p["zone"])
    request_id = (q.get("requestId") or [""])[0]
    if request_id and request_id in server.request_ids:
        return server.clock.get(server.request_ids[request_id]["name"])
    disk_type, size = _check_new_disk(server, zone, body)
    name = body["name"]
    path = _disk_path(project, zone, name)
    if (zone, name) in server.disks:
        raise ApiError(409, "alreadyExists", f"The resource '{path}' already exists")
    disk: dict[str, Any] = {
        "kind": "compute#disk",
        "id": server.next_id(),
        "creationTimestamp": now(),
        "name": name,
        "sizeGb": str(size),
        "zone": server.url(f"zones/{zone}", project),
        "status": "CREATING",
        "selfLink": f"{server.base}/{path}",
        "type": server.url(f"zones/{zone}/diskTypes/{disk_type}", project),
        "labels": dict(body.get("labels", {})),
        "labelFingerprint": fingerprint(),
        "physicalBlockSizeBytes": "4096",
    }
    for key in ("description", "provisionedIops", "provisionedThroughput"):
        if key in body:
            disk[key] = str(body[key]) if key != "description" else body[key]
    if "sourceSnapshot" in body:
        snapshot = find_snapshot(server, project, last(body["sourceSnapshot"]))
        disk["sourceSnapshot"] = snapshot["selfLink"]
        disk["sourceSnapshotId"] = snapshot["id"]
        if int(snapshot["diskSizeGb"]) > size:
            raise ApiError(
                400, "invalid", "Requested disk size cannot be smaller than the snapshot size"
            )
    if "diskEncryptionKey" in body:
        key = body["diskEncryptionKey"].get("kmsKeyName", "")
        disk["diskEncryptionKey"] = {"kmsKeyName": f"{key}/cryptoKeyVersions/1"}
    server.disks[(zone, name)] = disk

    restored = disk.get("sourceSnapshotId")

    def created() -> Any:
        disk["status"] = "READY"
        if restored is None:
            return None
        presenter, size = server.presenter, int(disk["sizeGb"]) * 1024**3
        return lambda: gce_images.restore(presenter, restored, disk["id"], size)

    operation = start_operation(server, "insert", disk["selfLink"], f"zones/{zone}", created)
    if request_id:
        server.request_ids[request_id] = operation
    return operation


@handles("compute.disks.delete")
def disks_delete(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    zone = server.zone_of(p["project"], p["zone"])
    disk = find_disk(server, p["project"], zone, p["disk"])
    holders = disk.get("users", []) or sorted(server.pending.get((zone, disk["name"]), ()))
    if holders:
        raise in_use(server, disk, last(holders[0]))
    disk["status"] = "DELETING"

    def deleted() -> Any:
        server.disks.pop((zone, disk["name"]), None)
        if server.presenter is not None:
            presenter, key = server.presenter, disk["id"]
            return lambda: presenter.forget(key)
        return None

    return start_operation(server, "delete", disk["selfLink"], f"zones/{zone}", deleted)


@handles("compute.disks.resize")
def disks_resize(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    zone = server.zone_of(p["project"], p["zone"])
    disk = find_disk(server, p["project"], zone, p["disk"])
    size = int(body.get("sizeGb", 0))
    if size < int(disk["sizeGb"]):
        raise ApiError(
            400,
            "invalid",
            f"Invalid value for field 'sizeGb': '{size}'. Requested disk size "
            f"cannot be smaller than the current size ({disk['sizeGb']} GB).",
        )
    high = DISK_TYPE_SIZES[last(disk["type"])][1]
    if size > high:
        raise ApiError(
            400, "invalid", f"Invalid value for field 'sizeGb': '{size}'. Above {high} GB."
        )

    def resized() -> Any:
        disk["sizeGb"] = str(size)
        return present(server, disk)

    return start_operation(server, "resize", disk["selfLink"], f"zones/{zone}", resized)


@handles("compute.disks.setLabels")
def disks_set_labels(server: GceServer, p: dict[str, str], q: Any, body: Any) -> dict[str, Any]:
    zone = server.zone_of(p["project"], p["zone"])
    disk = find_disk(server, p["project"], zone, p["resource"])
    if body.get("labelFingerprint") != disk["labelFingerprint"]:
        raise ApiError(
            412,
            "conditionNotMet",
            "Labels fingerprint either invalid or resource labels have changed",
            "CONDITION_NOT_MET",
        )
    disk["labels"] = dict(body.get("labels", {}))
    disk["labelFingerprint"] = fingerprint()
    return start_operation(server, "setLabels", disk["selfLink"], f"zones/{zone}", lambda: None)


# attachments -----------------------------------------------------------------------------
def present(server: GceServer, disk: dict[str, Any]) -> Any:
    """Show the disk where each guest holding it sees it (a follow-up, outside the lock)."""
    if server.presenter is None:
        return None
    shows = []
    for instance in server.instances.values():
        for attached in instance.disks:
            if attached["source"] == disk["selfLink"] and instance.by_id_dir is not None:
                shows.append(_links(instance, attached["deviceName"]))
    presenter, key, size = server.presenter, disk["id"], int(disk["sizeGb"]) * 1024**3

    def show() -> None:
        for links in shows:
            presenter.show(key, size, links)

    return show


def _links(instance: Instance, device: str) -> list[str]:
    assert instance.by_id_dir is not None
    links = [str(instance.by_id_dir / f"google-{device}")]  # 65-gce-disk-naming.rules
    if instance.interface == "SCSI":  # systemd's 60-persistent-storage.rules, from scsi_id
        links.append(str(instance.by_id_dir / f"scsi-0Google_PersistentDisk_{device}"))
    return links


# snapshots -------------------------------------------------------------------------------
def find_snapshot(server: GceServer, project: str, name: str) -> dict[str, Any]:
    found = server.snapshots.get(name)
    if found is None or project != server.project:
        raise ApiError(
            404,
            "notFound",
            f"The resource 'projects/{project}/global/snapshots/{name}' was not found",
        )
    return found
