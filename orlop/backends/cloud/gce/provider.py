"""Google Persistent Disk: the cloud-disk provider API over the Compute Engine v1 API.

IDs: a disk is `<zone>/<name>` (Compute Engine addresses disks by zone and name), a snapshot
`global/snapshots/<name>`. A disk is named `naming.disk_name(namespace, volume)`, so two hosts
creating the same volume at once get one disk (the second insert is refused as existing and
adopts it). It is attached under its own name as device name, so the guest shows it at
`google-<disk name>` (udev's 65-gce-disk-naming.rules, for SCSI and, through google_nvme_id,
for NVMe) and `scsi-0Google_PersistentDisk_<disk name>` (systemd's rules, SCSI only).
Compute Engine refuses to attach a disk held READ_WRITE by another instance; the refusal
names the holder.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from orlop.backends.base import Check
from orlop.backends.cloud import naming
from orlop.backends.cloud.api import (
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
from orlop.backends.cloud.gce import attachments
from orlop.backends.cloud.gce import labels as gce_labels
from orlop.backends.cloud.gce.client import Compute, metadata
from orlop.backends.cloud.gce.limits import (
    DEFAULT_TYPE,
    DISK_TYPES,
    canonical_count,
    canonical_kms_key,
    canonical_snapshot,
    canonical_zone,
    check_disk_options,
    default_size_gib,
)
from orlop.backends.cloud.gce.resources import disk_from, last, split_id
from orlop.backends.cloud.gce.settings import GceSettings
from orlop.backends.cloud.gce.snapshots import GceSnapshots
from orlop.core.model import InvalidOption, NotFound
from orlop.core.options import GIB, Option, OptionSet, canonical_gib_size, one_of

# The warm-up waits this long first: importing google-cloud-compute holds the GIL for about
# a second, which would otherwise slow the daemon's own start (a managed plugin's socket
# answering dockerd). A call before then imports it itself.
WARM_UP_AFTER = 2.0


def _warm_up() -> None:
    time.sleep(WARM_UP_AFTER)
    # Not installed: host_checks says what to install, and so does the first call.
    with contextlib.suppress(ImportError):
        importlib.import_module("google.cloud.compute_v1")


class GceProvider:
    kind: ClassVar[str] = "gce"
    disk_word: ClassVar[str] = "persistent disk"
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option(
                "size",
                canonical_gib_size,
                "size, 1G or more, rounded up to whole GiB (default 10G)",
            ),
            Option("type", one_of(*DISK_TYPES), f"disk type (default {DEFAULT_TYPE})"),
            Option("provisioned_iops", canonical_count, "IOPS (pd-extreme, hyperdisk-*)"),
            Option("provisioned_throughput", canonical_count, "MiB/s (hyperdisk-*)"),
            Option("zone", canonical_zone, "zone (default: this instance's)"),
            Option("from_snapshot", canonical_snapshot, "global/snapshots/NAME or Orlop name"),
            Option("kms_key", canonical_kms_key, "Cloud KMS key to encrypt the disk with"),
        ]
    )
    settings_model: ClassVar[type[CloudSettings]] = GceSettings
    refuses_second_attach: ClassVar[bool] = True

    def __init__(self, settings: CloudSettings, state_dir: str) -> None:
        assert isinstance(settings, GceSettings)
        self.settings = settings
        self.state_dir = state_dir
        self.compute = Compute(settings)
        self.snapshots = GceSnapshots(self.compute, lambda: self.project)
        self._identity: Identity | None = None
        self._project: str | None = settings.project
        self._lock = threading.Lock()
        # google-cloud-compute takes seconds to import (every Compute message type): start
        # now, in the background, so the first request does not wait for all of it.
        threading.Thread(target=_warm_up, daemon=True, name="gce-import").start()

    # identity ------------------------------------------------------------------------------
    @property
    def project(self) -> str:
        if self._project is None:
            self.identity()
        assert self._project is not None
        return self._project

    def identity(self) -> Identity:
        with self._lock:
            if self._identity is None:
                given = self.settings
                project = given.project or metadata(given, "project/project-id")
                instance = given.instance or metadata(given, "instance/name")
                zone = given.zone or last(metadata(given, "instance/zone"))
                self._project = project
                self._identity = Identity(
                    instance=instance, zone=zone, region=zone.rsplit("-", 1)[0]
                )
            return self._identity

    # options -------------------------------------------------------------------------------
    def validate(self, options: dict[str, str]) -> None:
        check_disk_options(options)

    def options_of(self, disk: Disk) -> dict[str, str]:
        result = {"size": str(disk.size), "type": str(disk.facts.get("type", DEFAULT_TYPE))}
        if disk.zone:
            result["zone"] = disk.zone
        for name in ("provisioned_iops", "provisioned_throughput"):
            if disk.facts.get(name):
                result[name] = str(disk.facts[name])
        return result

    def describe(self, record: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("disk_name", "zone", "type", "provisioned_iops", "provisioned_throughput")
        return {key: record[key] for key in keys if record.get(key) is not None}

    @classmethod
    def host_checks(cls) -> list[Check]:
        try:
            from google.cloud import compute_v1

            found = getattr(compute_v1, "__version__", "installed")
            return [Check("python google-cloud-compute", True, str(found))]
        except ImportError:
            return [
                Check(
                    "python google-cloud-compute",
                    False,
                    "not installed",
                    "pip install 'orlop[gce]'",
                )
            ]

    # disks ---------------------------------------------------------------------------------
    def _fetch(self, zone: str, name: str) -> Any | None:
        disks = self.compute.client("DisksClient")
        try:
            return self.compute.call(
                f"read disk {name}", disks.get, project=self.project, zone=zone, disk=name
            )
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise

    def get_disk(self, disk_id: str) -> Disk | None:
        resource = self._fetch(*split_id(disk_id))
        if resource is None or resource.status == "DELETING":
            return None
        return disk_from(resource)

    def find_disks(self, namespace: str, volume: str | None = None) -> list[Disk]:
        from google.cloud import compute_v1

        wanted = {"managed-by": "orlop", LABEL_NAMESPACE: namespace}
        if volume is not None:
            wanted[LABEL_VOLUME] = volume
        disks = self.compute.client("DisksClient")
        pages = self.compute.call(
            f"list the disks of namespace {namespace}",
            disks.aggregated_list,
            request=compute_v1.AggregatedListDisksRequest(
                project=self.project, filter=gce_labels.filter_for(wanted)
            ),
        )
        found = []
        for _, scoped in self._pages(pages, f"list the disks of namespace {namespace}"):
            for resource in scoped.disks:
                disk = disk_from(resource)
                if disk.state != "deleting" and all(
                    disk.labels.get(k) == v for k, v in wanted.items()
                ):
                    found.append(disk)
        return found

    def _pages(self, pager: Any, what: str) -> list[Any]:
        """Every item of a pager (the following pages are requests too)."""
        return self.compute.call(what, lambda **_: list(pager))

    def create_disk(self, spec: DiskSpec, identity: Identity) -> Disk:
        options = spec.options
        self.validate(options)
        zone = options.get("zone") or identity.zone
        if zone is None:
            raise InvalidOption("no zone: give the zone option or the zone setting")
        if zone != identity.zone:
            self._check_zone(zone)
        disk_type = options.get("type", DEFAULT_TYPE)
        snapshot = spec.snapshot or self._resolve_snapshot(options, spec.namespace)
        if "size" in options:
            size_gib = int(options["size"]) // GIB
        elif snapshot is not None and snapshot.size:
            size_gib = max(-(-snapshot.size // GIB), default_size_gib(disk_type))
        else:
            size_gib = default_size_gib(disk_type)
        body: dict[str, Any] = {
            "size_gb": size_gib,
            "type_": f"projects/{self.project}/zones/{zone}/diskTypes/{disk_type}",
            "labels": gce_labels.encode(spec.labels),
            "description": f"Orlop volume {spec.volume} (namespace {spec.namespace})",
        }
        if "provisioned_iops" in options:
            body["provisioned_iops"] = int(options["provisioned_iops"])
        if "provisioned_throughput" in options:
            body["provisioned_throughput"] = int(options["provisioned_throughput"])
        if snapshot is not None:
            body["source_snapshot"] = snapshot.id
        if "kms_key" in options:
            body["disk_encryption_key"] = {"kms_key_name": options["kms_key"]}
        name = naming.disk_name(spec.namespace, spec.volume)
        existing = self._insert(zone, name, body, spec)
        if existing is not None and existing.labels.get(LABEL_VOLUME) != spec.volume:
            # A disk kept by keep_on_remove (labels gone) or not Orlop's holds the name.
            name = naming.disk_name(f"{spec.namespace}/{spec.token}", spec.volume)
            existing = self._insert(zone, name, body, spec)
        if existing is not None:
            return existing
        created = self._fetch(zone, name)
        if created is None:
            raise CloudError(f"disk {name} vanished right after it was created", ErrorKind.FAILED)
        return disk_from(created)

    def _insert(self, zone: str, name: str, body: dict[str, Any], spec: DiskSpec) -> Disk | None:
        """Create disk `name`; None once made, or the disk that already had the name."""
        from google.cloud import compute_v1

        disks = self.compute.client("DisksClient")
        what = f"create disk {name} for volume {spec.volume}"
        try:
            operation = self.compute.call(
                what,
                disks.insert_unary,
                request=compute_v1.InsertDiskRequest(
                    project=self.project,
                    zone=zone,
                    disk_resource=compute_v1.Disk(name=name, **body),
                    # Compute Engine runs a request ID once: a create repeated is one disk.
                    request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"orlop:{spec.token}:{name}")),
                ),
            )
        except CloudError as error:
            if error.code != "alreadyExists":
                raise
            resource = self._fetch(zone, name)
            if resource is None:
                raise
            return disk_from(resource)
        self.compute.wait(what, operation, self.project, zone, self.settings.create_timeout)
        return None

    def _check_zone(self, zone: str) -> None:
        zones = self.compute.client("ZonesClient")
        try:
            self.compute.call(f"read zone {zone}", zones.get, project=self.project, zone=zone)
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
            pages = self.compute.call("list zones", zones.list, project=self.project)
            names = sorted(z.name for z in self._pages(pages, "list zones"))
            raise InvalidOption(
                f"zone {zone} does not exist in project {self.project}: zones are "
                f"{', '.join(names) or 'none'}"
            ) from None

    def delete_disk(self, disk: Disk) -> None:
        zone, name = split_id(disk.id)
        disks = self.compute.client("DisksClient")
        what = f"delete disk {name}"
        try:
            operation = self.compute.call(
                what, disks.delete_unary, project=self.project, zone=zone, disk=name
            )
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return
            raise
        self.compute.wait(what, operation, self.project, zone, self.settings.create_timeout)

    def set_labels(self, disk: Disk, labels: Mapping[str, str | None]) -> None:
        from google.cloud import compute_v1

        zone, name = split_id(disk.id)
        resource = self._fetch(zone, name)
        if resource is None:
            raise CloudError(f"disk {name} does not exist", ErrorKind.NOT_FOUND)
        request = compute_v1.ZoneSetLabelsRequest(
            labels=gce_labels.merged(dict(resource.labels), labels),
            # Compute Engine refuses a change made against labels that changed meanwhile.
            label_fingerprint=resource.label_fingerprint,
        )
        what = f"set the labels of disk {name}"
        disks = self.compute.client("DisksClient")
        operation = self.compute.call(
            what,
            disks.set_labels_unary,
            project=self.project,
            zone=zone,
            resource=name,
            zone_set_labels_request_resource=request,
        )
        self.compute.wait(what, operation, self.project, zone, self.settings.create_timeout)

    # attachments ---------------------------------------------------------------------------
    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        return disk.name  # valid as a device name, unique in the zone, the same on every host

    def attach_disk(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        zone, name = split_id(disk.id)
        attachments.attach(
            self.compute, self.project, zone, name, identity.instance, device_name or name
        )

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        # Compute Engine has no forced detach: `force` changes nothing here.
        zone, name = split_id(disk.id)
        attachments.detach(self.compute, self.project, zone, name, instance)

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        device = attachment.device_name or disk.name
        root = self.settings.by_id_dir.rstrip("/")
        return [f"{root}/google-{device}", f"{root}/scsi-0Google_PersistentDisk_{device}"]

    def resize_disk(self, disk: Disk, size: int) -> None:
        from google.cloud import compute_v1

        zone, name = split_id(disk.id)
        size_gib = -(-size // GIB)
        if size_gib * GIB <= disk.size:
            return  # grow only: as big already
        check_disk_options({**self.options_of(disk), "size": str(size_gib * GIB)})
        what = f"resize disk {name} to {size_gib} GiB"
        disks = self.compute.client("DisksClient")
        operation = self.compute.call(
            what,
            disks.resize_unary,
            project=self.project,
            zone=zone,
            disk=name,
            disks_resize_request_resource=compute_v1.DisksResizeRequest(size_gb=size_gib),
        )
        self.compute.wait(what, operation, self.project, zone, self.settings.create_timeout)

    # from_snapshot -------------------------------------------------------------------------
    def _resolve_snapshot(self, options: Mapping[str, str], namespace: str) -> Snapshot | None:
        wanted = options.get("from_snapshot")
        if wanted is None:
            return None
        if self.is_snapshot_id(wanted):
            snapshot = self.get_snapshot(wanted)
        else:
            found = self.find_snapshots(namespace, name=wanted)
            snapshot = found[0] if found else None
        if snapshot is None:
            raise NotFound(
                f"snapshot {wanted} does not exist in project {self.project} "
                f"(namespace {namespace}): see `orlop snapshot ls`"
            )
        return snapshot

    # CloudSnapshots, answered by GceSnapshots ----------------------------------------------
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
        return self.snapshots.is_snapshot_id(text)
