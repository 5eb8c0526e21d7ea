"""Compute Engine resources as the provider API's dataclasses."""

from __future__ import annotations

from typing import Any

from orlop.backends.cloud.api import LABEL_SNAPSHOT, LABEL_VOLUME, Attachment, Disk, Snapshot
from orlop.backends.cloud.gce import labels as gce_labels
from orlop.core.model import NotFound
from orlop.core.options import GIB

STATES: dict[str, Any] = {
    "CREATING": "creating",
    "RESTORING": "creating",
    "READY": "ready",
    "FAILED": "error",
    "UNAVAILABLE": "error",
    "DELETING": "deleting",
}


def last(url: str) -> str:
    """The name at the end of a resource URL (zones/…/instances/NAME → NAME)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def split_id(disk_id: str) -> tuple[str, str]:
    """(zone, name) of a disk ID."""
    zone, _, name = disk_id.partition("/")
    if not zone or not name:
        raise NotFound(f"{disk_id!r} is not a persistent disk ID (ZONE/NAME)")
    return zone, name


def disk_from(resource: Any) -> Disk:
    """A Compute Engine Disk resource as the layer's Disk, labels decoded."""
    zone = last(resource.zone)
    facts: dict[str, Any] = {"type": last(resource.type_), "self_link": resource.self_link}
    if resource.provisioned_iops:
        facts["provisioned_iops"] = int(resource.provisioned_iops)
    if resource.provisioned_throughput:
        facts["provisioned_throughput"] = int(resource.provisioned_throughput)
    if resource.source_snapshot:
        facts["source_snapshot"] = f"global/snapshots/{last(resource.source_snapshot)}"
    key = resource.disk_encryption_key.kms_key_name if resource.disk_encryption_key else ""
    if key:
        facts["kms_key"] = key.split("/cryptoKeyVersions/")[0]
    return Disk(
        id=f"{zone}/{resource.name}",
        name=resource.name,
        size=int(resource.size_gb) * GIB,
        state=STATES.get(resource.status, "error"),
        zone=zone,
        labels=gce_labels.decode(dict(resource.labels)),
        attachments=[Attachment(instance=last(user)) for user in resource.users],
        facts=facts,
        created_at=resource.creation_timestamp or None,
    )


def snapshot_from(resource: Any) -> Snapshot:
    """A Compute Engine Snapshot resource as the layer's Snapshot, labels decoded."""
    logical = gce_labels.decode(dict(resource.labels))
    facts: dict[str, Any] = {}
    if resource.source_disk:
        facts["source_disk"] = "/".join(resource.source_disk.split("/")[-3::2])
    if resource.storage_bytes:
        facts["storage_bytes"] = int(resource.storage_bytes)
    return Snapshot(
        id=f"global/snapshots/{resource.name}",
        name=logical.get(LABEL_SNAPSHOT, ""),
        volume=logical.get(LABEL_VOLUME, ""),
        state=resource.status,
        size=int(resource.disk_size_gb) * GIB if resource.disk_size_gb else None,
        created_at=resource.creation_timestamp,
        labels=logical,
        facts=facts,
    )
