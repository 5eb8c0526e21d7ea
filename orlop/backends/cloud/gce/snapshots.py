"""Persistent disk snapshots (global resources): CloudSnapshots for GceProvider.

A snapshot's ID is `global/snapshots/<name>`, the partial URL Compute Engine itself takes as a
disk's sourceSnapshot; its name is `naming.disk_name` of (namespace, volume@name) with the
`orlop-snap-` prefix. Labels carry the Orlop name and the volume, as on disks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
from orlop.backends.cloud.gce import labels as gce_labels
from orlop.backends.cloud.gce.client import Compute
from orlop.backends.cloud.gce.limits import snapshot_name_of
from orlop.backends.cloud.gce.resources import snapshot_from


class GceSnapshots:
    """CloudSnapshots over the Compute API; GceProvider hands its calls here."""

    def __init__(self, compute: Compute, project: Callable[[], str]) -> None:
        self.compute = compute
        self._project = project  # from the settings or the metadata server, on first use

    @property
    def project(self) -> str:
        return self._project()

    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        from google.cloud import compute_v1

        zone, _, disk_name = disk.id.partition("/")
        namespace = labels.get(LABEL_NAMESPACE, "")
        volume = labels.get(LABEL_VOLUME, disk.volume or disk_name)
        snapshot_name = naming.disk_name(namespace, f"{volume}@{name}", prefix="orlop-snap-")
        disks = self.compute.client("DisksClient")
        what = f"snapshot disk {disk_name} as {name}"
        # Not waited for: a snapshot takes minutes; its state says when it is READY.
        self.compute.call(
            what,
            disks.create_snapshot_unary,
            project=self.project,
            zone=zone,
            disk=disk_name,
            snapshot_resource=compute_v1.Snapshot(
                name=snapshot_name, labels=gce_labels.encode({**labels, LABEL_SNAPSHOT: name})
            ),
        )
        found = self.get_snapshot(f"global/snapshots/{snapshot_name}")
        if found is None:
            raise CloudError(f"snapshot {snapshot_name} vanished once started", ErrorKind.FAILED)
        return found

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        from google.cloud import compute_v1

        wanted = {"managed-by": "orlop", LABEL_NAMESPACE: namespace}
        if volume is not None:
            wanted[LABEL_VOLUME] = volume
        if name is not None:
            wanted[LABEL_SNAPSHOT] = name
        snapshots = self.compute.client("SnapshotsClient")
        what = f"list the snapshots of namespace {namespace}"
        pager = self.compute.call(
            what,
            snapshots.list,
            request=compute_v1.ListSnapshotsRequest(
                project=self.project, filter=gce_labels.filter_for(wanted)
            ),
        )
        found = [snapshot_from(r) for r in self.compute.call(what, lambda **_: list(pager))]
        return [
            s
            for s in found
            if s.state != "DELETING" and all(s.labels.get(k) == v for k, v in wanted.items())
        ]

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        name = snapshot_name_of(snapshot_id)
        if name is None:
            return None
        snapshots = self.compute.client("SnapshotsClient")
        try:
            resource = self.compute.call(
                f"read snapshot {name}", snapshots.get, project=self.project, snapshot=name
            )
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return None if resource.status == "DELETING" else snapshot_from(resource)

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        name = snapshot_name_of(snapshot.id)
        if name is None:
            return
        snapshots = self.compute.client("SnapshotsClient")
        try:
            # A global operation; not waited for: the snapshot shows DELETING meanwhile.
            self.compute.call(
                f"delete snapshot {name}",
                snapshots.delete_unary,
                project=self.project,
                snapshot=name,
            )
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise

    def is_snapshot_id(self, text: str) -> bool:
        return snapshot_name_of(text) is not None
