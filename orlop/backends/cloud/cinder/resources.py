"""Cinder's volumes and snapshots as the layer's `Disk`s and `Snapshot`s (their labels
decoded by `labels.py`); option values."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orlop.backends.cloud.api import LABEL_SNAPSHOT, LABEL_VOLUME, Attachment, Disk, Snapshot
from orlop.backends.cloud.cinder.labels import decode
from orlop.core.options import GIB

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_CREATING = {"creating", "downloading", "restoring-backup", "awaiting-transfer"}
_ATTACHING = {"attaching", "reserved"}


def canonical_text(value: str) -> str:
    if not value.strip() or len(value) > 255:
        raise ValueError(f"{value!r} must be 1 to 255 characters")
    return value.strip()


@dataclass(frozen=True, slots=True)
class CinderAttachment:
    """One entry of Cinder's attachments API (reserved, attaching or attached)."""

    id: str
    instance: str


class SnapshotView:
    """A snapshot from Cinder's JSON, with the attribute names of openstacksdk's."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.id, self.status = body["id"], body.get("status")
        self.size, self.created_at = body.get("size"), body.get("created_at")
        self.metadata, self.volume_id = body.get("metadata") or {}, body.get("volume_id")


def to_disk(volume: Any, reserved: Callable[[str], list[CinderAttachment]]) -> Disk:
    """An openstacksdk Volume as a Disk; `reserved` lists the attachments API's entries."""
    status = str(volume.status or "")
    if status in _CREATING:
        state = "creating"
    elif status.startswith("error"):
        state = "error"
    elif status in ("deleting", "deleted"):
        state = "deleting"
    else:
        state = "ready"
    attachments = [
        Attachment(
            instance=str(a.get("server_id")),
            state="detaching" if status == "detaching" else "attached",
            device_name=a.get("device"),
        )
        for a in (volume.attachments or [])
        if a.get("server_id")
    ]
    if status in _ATTACHING or (status == "detaching" and not attachments):
        # Cinder lists only completed attachments on the volume; a reserved one (Nova has
        # begun attaching) is only in the attachments API
        attachments = [
            Attachment(instance=a.instance, state="attaching") for a in reserved(volume.id)
        ] or attachments
    return Disk(
        id=volume.id,
        name=volume.name or "",
        size=int(volume.size or 0) * GIB,
        state=state,  # type: ignore[arg-type]
        zone=volume.availability_zone,
        labels=decode(volume.metadata or {}),
        attachments=attachments,
        facts={
            "type": volume.volume_type,
            "status": status,
            "multiattach": bool(volume.is_multiattach),
            "encrypted": bool(volume.is_encrypted),
        },
        created_at=volume.created_at,
    )


def to_snapshot(found: Any) -> Snapshot:
    labels = decode(found.metadata or {})
    return Snapshot(
        id=found.id,
        name=labels.get(LABEL_SNAPSHOT, ""),
        volume=labels.get(LABEL_VOLUME, ""),
        state=str(found.status),
        size=int(found.size) * GIB if found.size is not None else None,
        created_at=str(found.created_at or ""),
        labels=labels,
        facts={"volume_id": found.volume_id},
    )
