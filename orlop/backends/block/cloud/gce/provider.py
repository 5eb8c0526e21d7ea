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
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from orlop.backends.base import Check
from orlop.backends.block.cloud import naming
from orlop.backends.block.cloud.api import (
    LABEL_NAMESPACE,
    LABEL_VOLUME,
    Attachment,
    CloudError,
    CloudSettings,
    Disk,
    DiskSpec,
    ErrorKind,
    Identity,
)
from orlop.backends.block.cloud.gce import labels as gce_labels
from orlop.backends.block.cloud.gce.client import Compute, metadata
from orlop.backends.block.cloud.gce.limits import (
    DEFAULT_TYPE,
    DISK_TYPES,
    GIB,
    canonical_count,
    canonical_gib_size,
    canonical_kms_key,
    canonical_snapshot,
    canonical_zone,
    check_disk_options,
    default_size_gib,
)
from orlop.backends.block.cloud.gce.settings import GceSettings
from orlop.backends.block.cloud.gce.snapshots import SnapshotCalls
from orlop.core.model import InvalidOption, NotFound
from orlop.core.options import Option, OptionSet, one_of

_STATES: dict[str, Any] = {
    "CREATING": "creating",
    "RESTORING": "creating",
    "READY": "ready",
    "FAILED": "error",
    "UNAVAILABLE": "error",
    "DELETING": "deleting",
}


def _warm_up() -> None:
    # Not installed: host_checks says what to install, and so does the first call.
    with contextlib.suppress(ImportError):
        importlib.import_module("google.cloud.compute_v1")


def last(url: str) -> str:
    """The name at the end of a resource URL (zones/…/instances/NAME → NAME)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


class GceProvider(SnapshotCalls):
    kind: ClassVar[str] = "gce"
    disk_word: ClassVar[str] = "persistent disk"
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("size", canonical_gib_size, "size, rounded up to whole GiB (default 10G)"),
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
    def _disk(self, resource: Any) -> Disk:
        zone = last(resource.zone)
        facts: dict[str, Any] = {"type": last(resource.type_), "self_link": resource.self_link}
        if resource.provisioned_iops:
            facts["provisioned_iops"] = int(resource.provisioned_iops)
        if resource.provisioned_throughput:
            facts["provisioned_throughput"] = int(resource.provisioned_throughput)
        if resource.source_snapshot:
            facts["source_snapshot"] = f"global/snapshots/{last(resource.source_snapshot)}"
        key = resource.disk_encryption_key.kms_key_name if resource.disk_encryption_key else ""
        if key:
            facts["kms_key"] = key.split("/cryptoKeyVersions/")[0]
        return Disk(
            id=f"{zone}/{resource.name}",
            name=resource.name,
            size=int(resource.size_gb) * GIB,
            state=_STATES.get(resource.status, "error"),
            zone=zone,
            labels=gce_labels.decode(dict(resource.labels)),
            attachments=[Attachment(instance=last(user)) for user in resource.users],
            facts=facts,
            created_at=resource.creation_timestamp or None,
        )

    def _split(self, disk_id: str) -> tuple[str, str]:
        zone, _, name = disk_id.partition("/")
        if not zone or not name:
            raise NotFound(f"{disk_id!r} is not a persistent disk ID (ZONE/NAME)")
        return zone, name

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
        resource = self._fetch(*self._split(disk_id))
        if resource is None or resource.status == "DELETING":
            return None
        return self._disk(resource)

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
                disk = self._disk(resource)
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
        return self._disk(created)

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
            return self._disk(resource)
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
        zone, name = self._split(disk.id)
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

        zone, name = self._split(disk.id)
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
        from google.cloud import compute_v1

        zone, name = self._split(disk.id)
        attached = compute_v1.AttachedDisk(
            source=f"projects/{self.project}/zones/{zone}/disks/{name}",
            device_name=device_name or name,
            mode="READ_WRITE",
            auto_delete=False,
        )
        what = f"attach disk {name} to instance {identity.instance}"
        instances = self.compute.client("InstancesClient")
        try:
            operation = self.compute.call(
                what,
                instances.attach_disk_unary,
                project=self.project,
                zone=zone,
                instance=identity.instance,
                attached_disk_resource=attached,
            )
        except CloudError as error:
            if error.kind is ErrorKind.IN_USE and error.holder == identity.instance:
                return  # attached here already: what was asked
            raise
        self.compute.wait(what, operation, self.project, zone, self.settings.attach_timeout)

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        # Compute Engine has no forced detach: `force` changes nothing here.
        zone, name = self._split(disk.id)
        instances = self.compute.client("InstancesClient")
        try:
            found = self.compute.call(
                f"read instance {instance}",
                instances.get,
                project=self.project,
                zone=zone,
                instance=instance,
            )
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return  # the instance is gone, and its attachments with it
            raise
        device = next((d.device_name for d in found.disks if last(d.source) == name), None)
        if device is None:
            return  # not attached there (any more)
        what = f"detach disk {name} from instance {instance}"
        try:
            operation = self.compute.call(
                what,
                instances.detach_disk_unary,
                project=self.project,
                zone=zone,
                instance=instance,
                device_name=device,
            )
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return
            raise
        self.compute.wait(what, operation, self.project, zone, self.settings.detach_timeout)

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        device = attachment.device_name or disk.name
        root = self.settings.by_id_dir.rstrip("/")
        return [f"{root}/google-{device}", f"{root}/scsi-0Google_PersistentDisk_{device}"]

    def resize_disk(self, disk: Disk, size: int) -> None:
        from google.cloud import compute_v1

        zone, name = self._split(disk.id)
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
    def _resolve_snapshot(self, options: Mapping[str, str], namespace: str) -> Any:
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
