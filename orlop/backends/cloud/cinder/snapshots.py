"""Cinder snapshots: the calls behind the provider's `CloudSnapshots` methods."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orlop.backends.cloud.api import (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
    LABEL_VOLUME,
    Disk,
    Snapshot,
)
from orlop.backends.cloud.cinder.client import (
    raise_cloud_error,
    raise_from_response,
    translated,
)
from orlop.backends.cloud.cinder.labels import PREFIX, encode, matches
from orlop.backends.cloud.cinder.resources import SnapshotView, to_snapshot


def create(conn: Any, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
    with translated(f"snapshotting Cinder volume {disk.id}"):
        found = conn.block_storage.create_snapshot(
            volume_id=disk.id,
            name=name,
            description=f"Orlop snapshot {name} of Docker volume {disk.volume}",
            metadata=encode(labels),
            force=True,  # an in-use volume: Orlop freezes the filesystem around it
        )
    return to_snapshot(found)


def find(conn: Any, namespace: str, volume: str | None, name: str | None) -> list[Snapshot]:
    wanted = {PREFIX + LABEL_MANAGED: "orlop", PREFIX + LABEL_NAMESPACE: namespace}
    if volume is not None:
        wanted[PREFIX + LABEL_VOLUME] = volume
    if name is not None:
        wanted[PREFIX + LABEL_SNAPSHOT] = name
    with translated("listing Cinder snapshots"):
        # openstacksdk has no metadata filter for snapshots; Cinder has (ast.literal_eval)
        response = conn.block_storage.get(
            "/snapshots/detail", params={"metadata": json.dumps(wanted)}, microversion="3.65"
        )
        raise_from_response(response)
        found = [SnapshotView(s) for s in response.json()["snapshots"]]
    snapshots = [to_snapshot(s) for s in found if matches(s.metadata, wanted)]
    return [s for s in snapshots if s.state not in ("deleting", "deleted")]


def get(conn: Any, snapshot_id: str) -> Snapshot | None:
    with translated(f"reading Cinder snapshot {snapshot_id}"):
        try:
            found = conn.block_storage.get_snapshot(snapshot_id)
        except Exception as error:
            if getattr(error, "status_code", None) == 404:
                return None
            raise
    return None if found.status in ("deleting", "deleted") else to_snapshot(found)


def delete(conn: Any, snapshot: Snapshot) -> None:
    try:
        conn.block_storage.delete_snapshot(snapshot.id, ignore_missing=True)
    except Exception as error:
        if getattr(error, "status_code", None) == 400 and not get(conn, snapshot.id):
            return  # being deleted already (Cinder refuses a second delete)
        raise_cloud_error(f"deleting Cinder snapshot {snapshot.id}", error)
