"""Dell PowerFlex (ScaleIO) volumes: the `powerflex` CloudProvider, through PyPowerFlex.

Attaching is mapping the volume to this host's SDC (`addMappedSdc`, multiple mappings not
allowed, so PowerFlex itself refuses a volume mapped elsewhere: no race guard needed);
detaching is `removeMappedSdc`. Both are synchronous. Volumes have no labels: how a volume's
name says which Orlop volume it is, see `labels.py`. PowerFlex allocates in 8 GiB steps:
sizes are rounded up, and Status says so.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from orlop.backends.base import Check
from orlop.backends.cloud.api import (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_VOLUME,
    Attachment,
    CloudError,
    CloudSettings,
    Disk,
    DiskSpec,
    ErrorKind,
    Identity,
    Snapshot,
)
from orlop.backends.cloud.powerflex import labels as pf_labels
from orlop.backends.cloud.powerflex.client import Gateway, PowerFlexSettings, rfc3339_of
from orlop.backends.cloud.powerflex.labels import KeptLabels
from orlop.backends.cloud.powerflex.snapshots import PowerFlexSnapshots, is_snapshot_id
from orlop.core.model import InvalidOption
from orlop.core.options import GIB, Option, OptionSet, bounded_size, one_of
from orlop.host.run import CommandError, run

log = logging.getLogger(__name__)

STEP_GIB = 8
MAX_GIB = 1024 * 1024  # 1 PiB
_TYPES = {"thin": "ThinProvisioned", "thick": "ThickProvisioned"}
_PROVISIONING = {value: key for key, value in _TYPES.items()}


def canonical_size(value: str) -> str:
    """A size rounded up to PowerFlex's 8 GiB steps, as bytes."""
    gib = -(-bounded_size(value, GIB, MAX_GIB * GIB, "a PowerFlex volume") // GIB)
    return str(max(1, math.ceil(gib / STEP_GIB)) * STEP_GIB * GIB)


def canonical_snapshot(value: str) -> str:
    if not value.strip():
        raise ValueError("empty: use a snapshot ID or the name of an Orlop snapshot")
    return value.strip()


class PowerFlexProvider:
    kind: ClassVar[str] = "powerflex"
    disk_word: ClassVar[str] = "PowerFlex volume"
    settings_model: ClassVar[type[CloudSettings]] = PowerFlexSettings
    refuses_second_attach: ClassVar[bool] = True  # addMappedSdc without multiple mappings
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("size", canonical_size, "size, rounded up to 8 GiB steps (default 8G)"),
            Option("provisioning", one_of(*_TYPES), "thin (default) or thick"),
            Option("from_snapshot", canonical_snapshot, "snapshot ID or Orlop snapshot name"),
        ]
    )

    def __init__(self, settings: PowerFlexSettings, state_dir: str) -> None:
        self.settings = settings
        self.gateway = Gateway(settings)
        self.kept = KeptLabels(Path(state_dir) / "powerflex-labels.json")
        self._system: str | None = None
        self._pool: tuple[str, str] | None = None  # (id, name)
        self.snapshots = PowerFlexSnapshots(self.gateway, settings, self.system_id, self.get_disk)

    def close(self) -> None:
        """Log out of the gateway (at shutdown; the login is otherwise kept)."""
        self.gateway.close()

    # identity ------------------------------------------------------------------------------
    def identity(self) -> Identity:
        system = self.system_id()
        guid = self.settings.sdc_guid or self._query_guid()
        sdcs = self.gateway.call("SDCs", lambda c: c.sdc.get(filter_fields={"sdcGuid": guid}))
        if not sdcs:
            raise CloudError(
                f"no SDC with GUID {guid} is known to PowerFlex system {system}: install and "
                "register the SDC on this host, or fix sdc_guid",
                ErrorKind.NOT_FOUND,
            )
        return Identity(str(sdcs[0]["id"]), None, system, "SDC")

    def _query_guid(self) -> str:
        try:
            out = run([self.settings.drv_cfg, "--query_guid"], timeout=30).stdout
        except (CommandError, OSError) as error:
            raise CloudError(
                f"cannot learn this host's SDC GUID ({self.settings.drv_cfg} --query_guid: "
                f"{error}): install the PowerFlex SDC or set sdc_guid",
                ErrorKind.NOT_FOUND,
            ) from None
        match = re.search(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f-]{27}", out)
        if match is None:
            raise CloudError(f"drv_cfg printed no GUID: {out[:100]!r}", ErrorKind.FAILED)
        return match.group(0).upper()

    def system_id(self) -> str:
        if self._system is None:
            systems = self.gateway.call("systems", lambda c: c.system.get())
            ids = [str(s["id"]) for s in systems]
            wanted = self.settings.system_id
            if wanted is not None and wanted not in ids:
                raise CloudError(
                    f"the PowerFlex gateway manages no system {wanted}: it has "
                    f"{', '.join(ids) or 'none'}",
                    ErrorKind.NOT_FOUND,
                )
            if wanted is None and len(ids) != 1:
                raise CloudError(
                    f"the PowerFlex gateway manages systems {', '.join(ids)}: set system_id",
                    ErrorKind.INVALID,
                )
            self._system = wanted or ids[0]
        return self._system

    def _storage_pool(self) -> tuple[str, str]:
        """The storage pool's (id, name), checked against what the system has."""
        if self._pool is not None:
            return self._pool
        system = self.system_id()
        domains = self.gateway.call(
            "protection domains",
            lambda c: c.protection_domain.get(filter_fields={"systemId": system}),
        )
        domain = _one(
            domains, self.settings.protection_domain, "protection domain", "protection_domain"
        )
        pools = self.gateway.call(
            "storage pools",
            lambda c: c.storage_pool.get(filter_fields={"protectionDomainId": domain["id"]}),
        )
        pool = _one(
            pools,
            self.settings.storage_pool,
            "storage pool",
            "storage_pool",
            f" in protection domain {domain['name']}",
        )
        self._pool = (str(pool["id"]), str(pool["name"]))
        return self._pool

    # disks ---------------------------------------------------------------------------------
    def validate(self, options: dict[str, str]) -> None:
        if "size" in options:
            canonical_size(options["size"])

    def create_disk(self, spec: DiskSpec, identity: Identity) -> Disk:
        pool_id, _ = self._storage_pool()  # an unknown pool fails here, before anything is made
        name = pf_labels.encode("o", spec.namespace, spec.volume)
        gib = int(spec.options.get("size", str(STEP_GIB * GIB))) // GIB
        provisioning = spec.options.get("provisioning", "thin")
        self.kept.keep(name, {k: v for k, v in spec.labels.items() if k not in _IN_NAME})
        source = spec.snapshot
        if source is not None:
            snapshot_gib = math.ceil((source.size or 0) / GIB)
            if "size" in spec.options and gib < snapshot_gib:
                raise InvalidOption(
                    f"size {gib}G is smaller than snapshot {source.id} "
                    f"({snapshot_gib}G): ask for at least that much"
                )
            made = self.gateway.call(
                "create volume from snapshot",
                lambda c: c.system.snapshot_volumes(
                    self.system_id(), [{"volumeId": source.id, "snapshotName": name}]
                ),
            )
            volume_id = str(made["volumeIdList"][0])
            if gib > snapshot_gib:
                self.gateway.call("grow volume", lambda c: c.volume.extend(volume_id, gib))
            return self._must(volume_id)
        try:
            made = self.gateway.call(
                "create volume",
                lambda c: c.volume.create(
                    pool_id, gib, name=name, volume_type=_TYPES[provisioning]
                ),
            )
        except CloudError as error:
            # The name is this volume's (namespace + Docker name): a create repeated after a
            # lost answer finds its volume; anything else is a real failure.
            existing = self._by_name(name) if "already in use" in str(error) else None
            if existing is None:
                raise
            return existing
        return self._disk(made)

    def _by_name(self, name: str) -> Disk | None:
        found = self.gateway.call("volumes", lambda c: c.volume.get(filter_fields={"name": name}))
        return self._disk(found[0]) if found else None

    def _must(self, volume_id: str) -> Disk:
        disk = self.get_disk(volume_id)
        if disk is None:
            raise CloudError(f"PowerFlex volume {volume_id} vanished", ErrorKind.FAILED)
        return disk

    def get_disk(self, disk_id: str) -> Disk | None:
        try:
            found = self.gateway.call("get volume", lambda c: c.volume.get(entity_id=disk_id))
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return self._disk(found)

    def find_disks(self, namespace: str, volume: str | None = None) -> list[Disk]:
        if volume is not None:
            disk = self._by_name(pf_labels.encode("o", namespace, volume))
            return [disk] if disk is not None else []
        every = self.gateway.call("volumes", lambda c: c.volume.get())
        return [
            self._disk(v, namespace)
            for v in every
            if pf_labels.decode("o", namespace, v["name"])[0]
        ]

    def delete_disk(self, disk: Disk) -> None:
        try:
            self.gateway.call("delete volume", lambda c: c.volume.delete(disk.id, "ONLY_ME"))
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
        self.kept.keep(disk.name, None)

    def set_labels(self, disk: Disk, labels: Mapping[str, str | None]) -> None:
        namespace = labels.get(LABEL_NAMESPACE, disk.labels.get(LABEL_NAMESPACE))
        volume = labels.get(LABEL_VOLUME, disk.volume)
        if LABEL_VOLUME in labels or LABEL_NAMESPACE in labels:
            name = (
                pf_labels.encode("o", namespace, volume)
                if namespace and volume
                else pf_labels.kept_name(disk.id)
            )
            if name != disk.name:
                self.gateway.call("rename volume", lambda c: c.volume.rename(disk.id, name))
                self.kept.keep(name, self.kept.every().get(disk.name, {}))
                self.kept.keep(disk.name, None)
                disk.name = name
        rest = {k: v for k, v in labels.items() if k not in _IN_NAME}
        if rest:
            kept = {**self.kept.every().get(disk.name, {}), **rest}
            self.kept.keep(disk.name, {k: v for k, v in kept.items() if v is not None})

    # attachments -----------------------------------------------------------------------------
    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        return None

    def attach_disk(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        try:
            self.gateway.call(
                "map volume",
                lambda c: c.volume.add_mapped_sdc(
                    disk.id, sdc_id=identity.instance, allow_multiple_mappings=False
                ),
            )
        except CloudError as error:
            now = self.get_disk(disk.id)
            holders = [a.instance for a in now.attachments] if now else []
            if identity.instance in holders:
                return
            if holders:
                raise CloudError(
                    f"PowerFlex refused to map {disk.id} to SDC {identity.instance}: it is "
                    f"mapped to SDC {holders[0]} ({error})",
                    ErrorKind.IN_USE,
                    error.code,
                    holders[0],
                ) from None
            raise

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        try:
            self.gateway.call(
                "unmap volume", lambda c: c.volume.remove_mapped_sdc(disk.id, sdc_id=instance)
            )
        except CloudError:
            now = self.get_disk(disk.id)
            if now is None or now.attached_to(instance) is None:
                return  # not mapped there (any more)
            raise

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        system = disk.facts.get("system_id") or self.system_id()
        return [f"{self.settings.by_id_dir.rstrip('/')}/emc-vol-{system}-{disk.id}"]

    def resize_disk(self, disk: Disk, size: int) -> None:
        gib = int(canonical_size(str(size))) // GIB
        self.gateway.call("grow volume", lambda c: c.volume.extend(disk.id, gib))

    # facts ---------------------------------------------------------------------------------
    def options_of(self, disk: Disk) -> dict[str, str]:
        options = {"size": str(disk.size)}
        if disk.facts.get("provisioning"):
            options["provisioning"] = str(disk.facts["provisioning"])
        return options

    def describe(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "volume_id": record.get("disk_id"),
            "volume_name": record.get("disk_name"),
            "size_gib": (record["size"] // GIB) if record.get("size") else None,
            "size_note": f"PowerFlex allocates in {STEP_GIB} GiB steps: sizes are rounded up",
            "provisioning": record.get("provisioning"),
            "storage_pool": record.get("storage_pool_id"),
            "system_id": record.get("system_id"),
        }

    @classmethod
    def host_checks(cls) -> list[Check]:
        try:
            import PyPowerFlex  # type: ignore[import-untyped]  # noqa: F401

            return [Check("python package PyPowerFlex", True, "installed")]
        except ImportError:
            return [
                Check(
                    "python package PyPowerFlex", False, "not installed", "pip install PyPowerFlex"
                )
            ]

    def _disk(self, volume: Mapping[str, Any], namespace: str | None = None) -> Disk:
        name = str(volume.get("name") or "")
        namespace = namespace or self.settings.namespace
        ours, docker_name = pf_labels.decode("o", namespace, name)
        labels: dict[str, str] = dict(self.kept.every().get(name, {}))
        if ours:
            labels.update({LABEL_MANAGED: "orlop", LABEL_NAMESPACE: namespace})
            if docker_name is not None:
                labels[LABEL_VOLUME] = docker_name
        created = volume.get("creationTime")
        return Disk(
            id=str(volume["id"]),
            name=name,
            size=int(volume.get("sizeInKb") or 0) * 1024,
            state="ready",
            zone=None,
            labels=labels,
            attachments=[Attachment(str(m["sdcId"])) for m in volume.get("mappedSdcInfo") or []],
            facts={
                "provisioning": _PROVISIONING.get(str(volume.get("volumeType"))),
                "storage_pool_id": volume.get("storagePoolId"),
                "system_id": self._system,
                "snapshot_of": volume.get("ancestorVolumeId"),
            },
            created_at=rfc3339_of(created),
        )

    # snapshots: the calls are in snapshots.py --------------------------------------------
    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        return self.snapshots.create_snapshot(disk, name, labels)

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        return self.snapshots.find_snapshots(namespace, volume, name)

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        return self.snapshots.get_snapshot(snapshot_id)

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots.delete_snapshot(snapshot)

    def is_snapshot_id(self, text: str) -> bool:
        return is_snapshot_id(text)  # no state: also on a provider not yet set up


_IN_NAME = (LABEL_MANAGED, LABEL_NAMESPACE, LABEL_VOLUME)


def _one(
    items: list[dict[str, Any]], wanted: str | None, word: str, setting: str, where: str = ""
) -> dict[str, Any]:
    known = ", ".join(sorted(str(i["name"]) for i in items)) or "none"
    if wanted is None:
        if len(items) == 1:
            return items[0]
        raise CloudError(f"several {word}s{where} ({known}): set {setting}", ErrorKind.INVALID)
    for item in items:
        if wanted in (item["name"], item["id"]):
            return item
    raise InvalidOption(f"unknown {word} {wanted}{where}: PowerFlex has {known}")
