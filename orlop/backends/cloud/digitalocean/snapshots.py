"""DigitalOcean volume snapshots: CloudSnapshots for DigitalOceanProvider.

A snapshot is named like a volume (`naming.disk_name` of namespace and `volume.name`) and
carries Orlop's labels as tags, as volumes do (`labels.py`); its ID is DigitalOcean's UUID.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orlop.backends.cloud import naming
from orlop.backends.cloud.api import (
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
    LABEL_VOLUME,
    CloudError,
    Disk,
    ErrorKind,
    Snapshot,
)
from orlop.backends.cloud.digitalocean import labels as do_labels
from orlop.backends.cloud.digitalocean.client import Api
from orlop.backends.cloud.digitalocean.labels import NAME_MAX
from orlop.core.options import GIB

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


class DoSnapshots:
    """CloudSnapshots over DigitalOcean's API; DigitalOceanProvider hands its calls here."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        body = {
            "name": naming.disk_name(
                str(labels.get(LABEL_NAMESPACE)), f"{disk.volume}.{name}", NAME_MAX
            ),
            "tags": do_labels.label_tags(labels),
        }
        made = self.api.call("snapshot", lambda c: c.volume_snapshots.create, disk.id, body)
        return snapshot_of(made["snapshot"])

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        found = self.api.list_all(
            "list snapshots", lambda c: c.snapshots.list, "snapshots", resource_type="volume"
        )
        snapshots = []
        for snapshot in map(snapshot_of, found):
            if snapshot.labels.get(LABEL_NAMESPACE) != namespace:
                continue
            if volume is not None and snapshot.volume != volume:
                continue
            if name is not None and snapshot.name != name:
                continue
            snapshots.append(snapshot)
        return snapshots

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        try:
            found = self.api.call(
                "get snapshot", lambda c: c.volume_snapshots.get_by_id, snapshot_id
            )
        except CloudError as error:
            if error.kind in (ErrorKind.NOT_FOUND, ErrorKind.INVALID):
                return None
            raise
        return snapshot_of(found["snapshot"])

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        try:
            self.api.call("delete snapshot", lambda c: c.volume_snapshots.delete_by_id, snapshot.id)
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise

    def is_snapshot_id(self, text: str) -> bool:
        return is_snapshot_id(text)


def snapshot_of(found: Mapping[str, Any]) -> Snapshot:
    labels = do_labels.labels_of(found.get("tags") or [])
    min_gib = found.get("min_disk_size")
    regions = list(found.get("regions") or [])
    return Snapshot(
        id=str(found["id"]),
        name=labels.get(LABEL_SNAPSHOT, ""),
        volume=labels.get(LABEL_VOLUME, ""),
        state="available",
        size=int(min_gib) * GIB if min_gib else None,
        created_at=str(found.get("created_at") or ""),
        labels=labels,
        facts={
            "volume_id": found.get("resource_id"),
            "region": regions[0] if regions else None,
            "size_gib": found.get("size_gigabytes"),
            "cloud_name": found.get("name"),
        },
    )


def is_snapshot_id(text: str) -> bool:
    return bool(_UUID.match(text))
