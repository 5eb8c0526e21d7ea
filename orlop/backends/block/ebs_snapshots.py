"""EBS snapshots for the EBS provider: create, list, delete, and resolve for from_snapshot.

Snapshots carry Orlop's tags (namespace, volume name, snapshot name), so every host with the
same namespace sees the same snapshots, and a snapshot can be named instead of its ID. A
snapshot of a mounted volume is crash-consistent, as EBS makes it.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from orlop.backends.base import VolumeRef
from orlop.backends.block.ebs_tags import (
    TAG_MANAGED,
    TAG_NAMESPACE,
    TAG_SNAPSHOT,
    TAG_VOLUME,
    tag,
)
from orlop.core.model import Conflict, NotFound, validate_name

if TYPE_CHECKING:
    from orlop.backends.block.ec2 import Ec2, Ec2Settings


class SnapshotsMixin:
    if TYPE_CHECKING:
        settings: Ec2Settings

        @property
        def ec2(self) -> Ec2: ...

        @staticmethod
        def _volume_id(volume: VolumeRef) -> str: ...

    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        validate_name(name, "snapshot name")
        if self._snapshots_named(name):
            raise Conflict(f"a snapshot named {name} already exists: pick another name")
        tags = [
            {"Key": TAG_MANAGED, "Value": "orlop"},
            {"Key": TAG_NAMESPACE, "Value": self.settings.namespace},
            {"Key": TAG_VOLUME, "Value": volume.name},
            {"Key": TAG_SNAPSHOT, "Value": name},
            {"Key": "Name", "Value": name},
        ]
        created = self.ec2.call(
            "CreateSnapshot",
            VolumeId=self._volume_id(volume),
            Description=f"orlop {self.settings.namespace}/{volume.name}: {name}",
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
        )
        return _facts(created)

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        filters = self._namespace_filter()
        if volume is not None:
            filters.append({"Name": f"tag:{TAG_VOLUME}", "Values": [volume]})
        found = self.ec2.paginate(
            "DescribeSnapshots", "Snapshots", OwnerIds=["self"], Filters=filters
        )
        return sorted((_facts(s) for s in found), key=lambda s: (s["created_at"], s["name"]))

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        found = self.resolve_snapshot(snapshot, True)
        if tag(found, TAG_NAMESPACE) != self.settings.namespace:
            raise Conflict(
                f"snapshot {found['SnapshotId']} was not made by Orlop (namespace "
                f"{self.settings.namespace}): delete it with the AWS tools if you mean to"
            )
        self.ec2.call("DeleteSnapshot", SnapshotId=found["SnapshotId"])
        return _facts(found)

    def resolve_snapshot(self, snapshot: str, ours_only: bool) -> dict[str, Any]:
        """A snapshot by ID (any the account can read) or by Orlop name; NotFound otherwise."""
        from orlop.backends.block.ec2 import Ec2Error

        if snapshot.startswith("snap-"):
            try:
                found = self.ec2.call("DescribeSnapshots", SnapshotIds=[snapshot])["Snapshots"]
            except Ec2Error as error:
                if error.code not in ("InvalidSnapshot.NotFound", "InvalidSnapshotID.Malformed"):
                    raise
                found = []
            if not found:
                raise NotFound(f"snapshot {snapshot} does not exist in region {self.ec2.region}")
            return dict(found[0])
        named = self._snapshots_named(snapshot)
        if not named:
            raise NotFound(
                f"no snapshot named {snapshot} in namespace {self.settings.namespace}: "
                "`orlop snapshot ls` lists them"
            )
        if len(named) > 1:
            ids = ", ".join(s["SnapshotId"] for s in named)
            raise Conflict(f"several snapshots are named {snapshot} ({ids}): use an ID")
        return named[0]

    def _snapshots_named(self, name: str) -> list[dict[str, Any]]:
        filters = [*self._namespace_filter(), {"Name": f"tag:{TAG_SNAPSHOT}", "Values": [name]}]
        return self.ec2.paginate(
            "DescribeSnapshots", "Snapshots", OwnerIds=["self"], Filters=filters
        )

    def _namespace_filter(self) -> list[dict[str, Any]]:
        return [{"Name": f"tag:{TAG_NAMESPACE}", "Values": [self.settings.namespace]}]


def _facts(snapshot: dict[str, Any]) -> dict[str, Any]:
    started = snapshot.get("StartTime")
    return {
        "id": snapshot["SnapshotId"],
        "name": tag(snapshot, TAG_SNAPSHOT) or "",
        "volume": tag(snapshot, TAG_VOLUME) or "",
        "volume_id": snapshot.get("VolumeId"),
        "state": snapshot.get("State"),
        "progress": snapshot.get("Progress"),
        "size_gib": snapshot.get("VolumeSize"),
        "encrypted": bool(snapshot.get("Encrypted")),
        "created_at": started.astimezone(datetime.UTC).isoformat()
        if isinstance(started, datetime.datetime)
        else str(started or ""),
    }
