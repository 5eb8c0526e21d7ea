"""PowerFlex snapshots: CloudSnapshots for PowerFlexProvider.

A snapshot is a volume of type Snapshot whose `ancestorVolumeId` is its volume; its name
(`pf_labels.encode("s", namespace, name)`) says it is Orlop's and which snapshot it is, as a
volume's name does for volumes. IDs are PowerFlex's 16 hex digits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from orlop.backends.cloud.api import (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
    LABEL_VOLUME,
    CloudError,
    Disk,
    ErrorKind,
    Snapshot,
)
from orlop.backends.cloud.powerflex import labels as pf_labels
from orlop.backends.cloud.powerflex.client import Gateway, PowerFlexSettings, rfc3339_of

_ID = re.compile(r"[0-9a-f]{16}\Z")


class PowerFlexSnapshots:
    """CloudSnapshots over the gateway; PowerFlexProvider hands its calls here. `system_id`
    and `get_disk` are the provider's (the system is learnt once, on first use)."""

    def __init__(
        self,
        gateway: Gateway,
        settings: PowerFlexSettings,
        system_id: Callable[[], str],
        get_disk: Callable[[str], Disk | None],
    ) -> None:
        self.gateway = gateway
        self.settings = settings
        self._system_id = system_id
        self._get_disk = get_disk

    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        namespace = str(labels.get(LABEL_NAMESPACE) or self.settings.namespace)
        pf_name = pf_labels.encode("s", namespace, name)
        made = self.gateway.call(
            "snapshot",
            lambda c: c.system.snapshot_volumes(
                self._system_id(), [{"volumeId": disk.id, "snapshotName": pf_name}]
            ),
        )
        found = self.get_snapshot(str(made["volumeIdList"][0]))
        if found is None:
            raise CloudError(f"the snapshot of {disk.id} vanished", ErrorKind.FAILED)
        return found

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        every = self.gateway.call("volumes", lambda c: c.volume.get())
        by_id = {str(v["id"]): v for v in every}
        found = []
        for each in every:
            snapshot = self._snapshot(each, by_id, namespace)
            if snapshot is None:
                continue
            if volume is not None and snapshot.volume != volume:
                continue
            if name is not None and each["name"] != pf_labels.encode("s", namespace, name):
                continue
            found.append(snapshot)
        return found

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        if not self.is_snapshot_id(snapshot_id):
            return None
        try:
            found = self.gateway.call("get snapshot", lambda c: c.volume.get(entity_id=snapshot_id))
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        if found.get("volumeType") != "Snapshot":
            return None
        ancestor = found.get("ancestorVolumeId")
        parents = {}
        if ancestor:
            parent = self._get_disk(str(ancestor))
            if parent is not None:
                parents[parent.id] = {"id": parent.id, "name": parent.name}
        return self._snapshot(found, parents, self.settings.namespace, any_name=True)

    def _snapshot(
        self,
        found: Mapping[str, Any],
        by_id: Mapping[str, Mapping[str, Any]],
        namespace: str,
        any_name: bool = False,
    ) -> Snapshot | None:
        ours, readable = pf_labels.decode("s", namespace, str(found.get("name") or ""))
        if not ours and not any_name:
            return None
        parent = by_id.get(str(found.get("ancestorVolumeId")))
        volume = pf_labels.decode("o", namespace, str(parent["name"]))[1] if parent else None
        labels = {LABEL_MANAGED: "orlop", LABEL_NAMESPACE: namespace} if ours else {}
        if ours and readable:
            labels[LABEL_SNAPSHOT] = readable
        if ours and volume:
            labels[LABEL_VOLUME] = volume
        return Snapshot(
            id=str(found["id"]),
            name=readable or "",
            volume=volume or "",
            state="ready",
            size=int(found.get("sizeInKb") or 0) * 1024,
            created_at=rfc3339_of(found.get("creationTime")) or "",
            labels=labels,
            facts={"volume_id": found.get("ancestorVolumeId"), "cloud_name": found.get("name")},
        )

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        try:
            self.gateway.call("delete snapshot", lambda c: c.volume.delete(snapshot.id, "ONLY_ME"))
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise

    def is_snapshot_id(self, text: str) -> bool:
        return is_snapshot_id(text)


def is_snapshot_id(text: str) -> bool:
    return bool(_ID.match(text))
