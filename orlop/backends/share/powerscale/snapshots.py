"""OneFS snapshots of PowerScale volumes (`orlop snapshot create|ls|rm`).

A snapshot is OneFS's of the volume's directory; which volume it belongs to is read back
from its path, so snapshots another host took are listed too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orlop.backends.base import VolumeRef
from orlop.backends.share.powerscale.labels import volume_at
from orlop.core.model import NotFound, rfc3339

if TYPE_CHECKING:  # the SDK (1,500 modules) is imported at the first call, not at start
    from orlop.backends.share.powerscale.client import OneFs


class PowerScaleSnapshots:
    def __init__(self, api: Callable[[VolumeRef | None], OneFs], base_path: str) -> None:
        """`api(volume)`: the driver's client with the volume's timeout."""
        self.api = api
        self.base_path = base_path

    def create(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        import isilon_sdk.v9_5_0 as isi  # type: ignore[import-untyped]

        api, path = self.api(volume), volume.record["path"]
        made = api.call(
            f"snapshotting {path}",
            lambda: api.snapshots.create_snapshot_snapshot(
                isi.SnapshotSnapshotCreateParams(name=name, path=path),
                _request_timeout=api.timeout,
            ),
        )
        return self._view(made)

    def list(self, volume: str | None) -> list[dict[str, Any]]:
        api = self.api(None)
        found = api.call(
            "listing snapshots",
            lambda: api.snapshots.list_snapshot_snapshots(_request_timeout=api.timeout),
        )
        views = [self._view(item) for item in found.snapshots or []]
        return [s for s in views if s["volume"] and volume in (None, s["volume"])]

    def delete(self, snapshot: str) -> dict[str, Any]:
        for found in self.list(None):
            if snapshot in (found["id"], found["name"]):
                self._delete(found["id"])
                return found
        raise NotFound(f"no snapshot {snapshot} of this driver's volumes")

    def _delete(self, snapshot_id: str) -> None:
        api = self.api(None)
        api.call(
            f"deleting snapshot {snapshot_id}",
            lambda: api.snapshots.delete_snapshot_snapshot(
                snapshot_id, _request_timeout=api.timeout
            ),
        )

    def _view(self, item: Any) -> dict[str, Any]:
        created = item.created
        return {
            "id": str(item.id),
            "name": item.name,
            "volume": volume_at(self.base_path, str(item.path or "")),
            "state": item.state,
            "created_at": rfc3339(int(created)) if created else None,
            "size": item.size,
        }
