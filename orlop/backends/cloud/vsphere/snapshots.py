"""Snapshots of vsphere volumes: vCenter's first-class-disk (FCD) snapshots.

A volume's VMDK becomes a first-class disk when its first snapshot is taken (RegisterDisk;
the FCD's ID is kept in the volume's metadata file), and each snapshot carries Orlop's
labels in its description. A snapshot's ID is `fcd-snap:<disk ID>:<snapshot ID>`. FCD
snapshots belong to their disk: removing the volume removes them. Only vCenter has FCDs
(an ESXi host alone answers without a VStorageObjectManager): then the calls say so.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from orlop.backends.cloud.api import (
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
    LABEL_VOLUME,
    CloudError,
    Disk,
    ErrorKind,
    Snapshot,
)
from orlop.backends.cloud.vsphere.client import Vsphere, vim
from orlop.backends.cloud.vsphere.files import DiskPath

_ID = re.compile(r"fcd-snap:([0-9a-fA-F-]{36}):([0-9a-fA-F-]{36})\Z")


def is_snapshot_id(text: str) -> bool:
    return _ID.match(text) is not None


class FcdSnapshots:
    def __init__(
        self,
        api: Vsphere,
        write_fact: Callable[[Disk, str, str], None],
    ) -> None:
        self.api = api
        self.write_fact = write_fact  # keeps the FCD ID in the volume's metadata

    def _manager(self) -> Any:
        manager = self.api.content.vStorageObjectManager
        if manager is None:
            raise CloudError(
                "this vSphere server has no first-class disks, so no snapshots: connect "
                "Orlop to vCenter (6.5 or later) rather than to an ESXi host",
                ErrorKind.INVALID,
            )
        return manager

    def fcd_of(self, disk: Disk) -> str:
        """The disk's FCD ID, registering the VMDK as a first-class disk the first time."""
        known = disk.facts.get("fcd")
        if known:
            return str(known)
        path = DiskPath.parse(disk.id)
        assert path is not None
        query = urllib.parse.urlencode(
            {"dcPath": self.api.datacenter_name(), "dsName": path.datastore}
        )
        url = (
            f"{self.api.scheme}://{self.api.host}:{self.api.port}/folder/"
            f"{urllib.parse.quote(path.vmdk)}?{query}"
        )
        manager = self._manager()
        made = self.api.call(
            f"registering {disk.id} as a first-class disk",
            lambda: manager.RegisterDisk(url, path.base),
        )
        fcd = str(made.config.id.id)
        self.write_fact(disk, "fcd", fcd)
        disk.facts["fcd"] = fcd
        return fcd

    def create(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        fcd = self.fcd_of(disk)
        store = self.api.datastore(str(disk.facts["datastore"]))
        description = json.dumps({"orlop": dict(labels), "size": disk.size}, sort_keys=True)
        manager = self._manager()
        what = f"taking snapshot {name} of {disk.id}"
        task = self.api.call(
            what,
            lambda: manager.VStorageObjectCreateSnapshot_Task(
                vim.vslm.ID(id=fcd), store, description
            ),
        )
        made = self.api.wait(task, what)
        found = self.get(f"fcd-snap:{fcd}:{made.id}")
        if found is None:
            raise CloudError(f"{what}: the new snapshot is not listed", ErrorKind.FAILED)
        return found

    def of_disks(self, disks: list[Disk]) -> list[Snapshot]:
        found = []
        for disk in disks:
            if disk.facts.get("fcd"):
                store = self.api.datastore(str(disk.facts["datastore"]))
                found.extend(self._list(str(disk.facts["fcd"]), store))
        return found

    def _list(self, fcd: str, store: Any) -> list[Snapshot]:
        manager = self._manager()
        try:
            info = self.api.call(
                f"listing the snapshots of first-class disk {fcd}",
                lambda: manager.RetrieveSnapshotInfo(vim.vslm.ID(id=fcd), store),
            )
        except CloudError as error:
            if error.kind in (ErrorKind.NOT_FOUND, ErrorKind.INVALID):
                return []  # the disk is gone, or on another datastore
            raise
        return [_snapshot(fcd, store.name, item) for item in info.snapshots or []]

    def get(self, snapshot_id: str) -> Snapshot | None:
        match = _ID.match(snapshot_id)
        if match is None:
            return None
        fcd, wanted = match.group(1), match.group(2)
        for store in self.api.datastores().values():
            for snapshot in self._list(fcd, store):
                if snapshot.id == f"fcd-snap:{fcd}:{wanted}":
                    return snapshot
        return None

    def delete(self, snapshot: Snapshot) -> None:
        match = _ID.match(snapshot.id)
        if match is None:
            return
        store = self.api.datastore(str(snapshot.facts["datastore"]))
        manager = self._manager()
        what = f"deleting snapshot {snapshot.id}"
        try:
            task = self.api.call(
                what,
                lambda: manager.DeleteSnapshot_Task(
                    vim.vslm.ID(id=match.group(1)), store, vim.vslm.ID(id=match.group(2))
                ),
            )
            self.api.wait(task, what)
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND and self.get(snapshot.id) is not None:
                raise

    def delete_disk(self, disk: Disk) -> bool:
        """Delete a first-class disk with its snapshots; False if the disk is not one."""
        fcd = disk.facts.get("fcd")
        if not fcd:
            return False
        store = self.api.datastore(str(disk.facts["datastore"]))
        manager = self._manager()
        what = f"deleting first-class disk {disk.id}"
        try:
            task = self.api.call(
                what, lambda: manager.DeleteVStorageObject_Task(vim.vslm.ID(id=fcd), store)
            )
            self.api.wait(task, what)
        except CloudError as error:
            if error.kind not in (ErrorKind.NOT_FOUND, ErrorKind.INVALID):
                raise
            return False  # not (or no longer) registered: the caller deletes the file
        return True


def _snapshot(fcd: str, datastore: str, item: Any) -> Snapshot:
    try:
        described = json.loads(item.description or "")
    except ValueError:
        described = {}
    labels = described.get("orlop") if isinstance(described, dict) else None
    labels = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
    size = described.get("size") if isinstance(described, dict) else None
    return Snapshot(
        id=f"fcd-snap:{fcd}:{item.id.id}",
        name=labels.get(LABEL_SNAPSHOT, ""),
        volume=labels.get(LABEL_VOLUME, ""),
        state="completed",  # an FCD snapshot exists once its task succeeded
        size=int(size) if isinstance(size, int) else None,
        created_at=item.createTime.isoformat() if item.createTime else "",
        labels=labels,
        facts={"datastore": datastore, "namespace": labels.get(LABEL_NAMESPACE, "")},
    )
