"""AWS EBS volumes: the `ebs` CloudProvider, through boto3.

Orlop's logical labels are EBS tags `orlop:<label>` (EBS tags take any Docker name as it is),
so volumes made before the cloud-disk layer are found as they were. EC2 refuses to attach a
volume that is attached elsewhere (VolumeInUse), so the layer needs no race guard here.
Modules: `client` (EC2 calls, error kinds, IMDSv2), `limits` (volume types and their
documented limits), `devices` (Xen names and Nitro NVMe serials).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from orlop.backends.base import Check
from orlop.backends.cloud.api import (
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
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
from orlop.backends.cloud.ebs import devices
from orlop.backends.cloud.ebs.client import EbsSettings, Ec2, instance_identity
from orlop.backends.cloud.ebs.labels import labels_of, tag_changes, tag_filters, tags_of
from orlop.backends.cloud.ebs.limits import (
    DEFAULT_TYPE,
    VOLUME_TYPES,
    canonical_count,
    canonical_kms_key,
    canonical_snapshot,
    canonical_zone,
    check_volume_options,
    default_size_gib,
    requested_gib,
)
from orlop.backends.cloud.waiting import wait_until
from orlop.core.model import BackendError, InvalidOption, rfc3339
from orlop.core.options import GIB, Option, OptionSet, canonical_bool, canonical_gib_size, one_of

log = logging.getLogger(__name__)

_STATES: dict[str, Any] = {
    "creating": "creating",
    "available": "ready",
    "in-use": "ready",
    "error": "error",
    "deleting": "deleting",
    "deleted": "deleting",
}


class EbsProvider:
    kind: ClassVar[str] = "ebs"
    disk_word: ClassVar[str] = "EBS volume"
    settings_model: ClassVar[type[CloudSettings]] = EbsSettings
    refuses_second_attach: ClassVar[bool] = True  # EC2 answers VolumeInUse
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option(
                "size",
                canonical_gib_size,
                "size, 1G or more, rounded up to whole GiB (default 10G)",
            ),
            Option("type", one_of(*VOLUME_TYPES), "EBS volume type (default gp3)"),
            Option("iops", canonical_count, "provisioned IOPS (gp3, io1, io2)"),
            Option("throughput", canonical_count, "throughput in MiB/s (gp3)"),
            Option("encrypted", canonical_bool, "encrypt the volume"),
            Option("kms_key_id", canonical_kms_key, "KMS key for encryption"),
            Option("availability_zone", canonical_zone, "zone (default: this instance's)"),
            Option("from_snapshot", canonical_snapshot, "snapshot ID or Orlop snapshot name"),
        ]
    )

    def __init__(self, settings: EbsSettings, state_dir: str) -> None:
        self.settings = settings
        self._ec2: Ec2 | None = None
        self._lock = threading.Lock()

    # identity and client -----------------------------------------------------------------
    def identity(self) -> Identity:
        instance, zone = self.settings.instance_id, self.settings.availability_zone
        if not instance or not zone:
            found = instance_identity(self.settings.imds_endpoint, self.settings.imds_timeout)
            instance, zone = instance or found[0], zone or found[1]
        return Identity(instance, zone, zone[:-1], "instance")

    @property
    def ec2(self) -> Ec2:
        with self._lock:
            if self._ec2 is None:
                region = self.settings.region
                if region is None and self.settings.availability_zone:
                    region = self.settings.availability_zone[:-1]
                if region is None and not os.environ.get("AWS_DEFAULT_REGION"):
                    region = self.identity().region  # us-east-1a → us-east-1
                self._ec2 = Ec2(self.settings, region)
            return self._ec2

    # disks ---------------------------------------------------------------------------------
    def validate(self, options: dict[str, str]) -> None:
        check_volume_options(options)

    def create_disk(self, spec: DiskSpec, identity: Identity) -> Disk:
        options = spec.options
        zone = options.get("availability_zone") or identity.zone or ""
        self._check_zone(zone)
        volume_type = options.get("type", DEFAULT_TYPE)
        snapshot_gib = (spec.snapshot.size or 0) // GIB if spec.snapshot else 0
        size = requested_gib(options)
        if size is None:
            size = snapshot_gib or default_size_gib(volume_type)
        elif size < snapshot_gib:
            raise InvalidOption(
                f"size {size} GiB is smaller than snapshot {spec.snapshot and spec.snapshot.id} "
                f"({snapshot_gib} GiB): ask for at least that much"
            )
        check_volume_options({**options, "size": str(size * GIB)})
        tags = tags_of(spec.labels, spec.volume)
        params: dict[str, Any] = {
            "AvailabilityZone": zone,
            "Size": size,
            "VolumeType": volume_type,
            "ClientToken": spec.token,
            "TagSpecifications": [{"ResourceType": "volume", "Tags": tags}],
        }
        for option, param in (("iops", "Iops"), ("throughput", "Throughput")):
            if option in options:
                params[param] = int(options[option])
        if options.get("encrypted") == "true":
            params["Encrypted"] = True
            if "kms_key_id" in options:
                params["KmsKeyId"] = options["kms_key_id"]
        if spec.snapshot:
            params["SnapshotId"] = spec.snapshot.id
        return _disk(self.ec2.call("CreateVolume", **params))

    def _check_zone(self, zone: str) -> None:
        try:
            zones = self.ec2.call("DescribeAvailabilityZones", ZoneNames=[zone])
        except CloudError as error:  # AWS refuses an unknown zone; moto answers an empty list
            if error.kind not in (ErrorKind.INVALID, ErrorKind.NOT_FOUND):
                raise
            zones = {"AvailabilityZones": []}
        if not zones.get("AvailabilityZones"):
            known = self.ec2.call("DescribeAvailabilityZones")["AvailabilityZones"]
            names = ", ".join(sorted(z["ZoneName"] for z in known))
            raise InvalidOption(
                f"unknown availability zone {zone} in region {self.ec2.region}: use one of {names}"
            )

    def get_disk(self, disk_id: str) -> Disk | None:
        try:
            found = self.ec2.call("DescribeVolumes", VolumeIds=[disk_id])["Volumes"]
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        disk = _disk(found[0]) if found else None
        return disk if disk is not None and disk.state != "deleting" else None

    def find_disks(self, namespace: str, volume: str | None = None) -> list[Disk]:
        filters = tag_filters(namespace, volume)
        found = self.ec2.paginate("DescribeVolumes", "Volumes", Filters=filters)
        return [disk for disk in map(_disk, found) if disk.state != "deleting"]

    def delete_disk(self, disk: Disk) -> None:
        try:
            self.ec2.call("DeleteVolume", VolumeId=disk.id)
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise

    def set_labels(self, disk: Disk, labels: Mapping[str, str | None]) -> None:
        put, drop = tag_changes(labels)
        if put:
            self.ec2.call("CreateTags", Resources=[disk.id], Tags=put)
        if drop:
            self.ec2.call("DeleteTags", Resources=[disk.id], Tags=drop)

    # attachments -----------------------------------------------------------------------------
    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        mine = self.ec2.call(
            "DescribeVolumes",
            Filters=[{"Name": "attachment.instance-id", "Values": [identity.instance]}],
        )["Volumes"]
        in_use = {
            a.device_name for v in mine for a in _disk(v).attachments if a.device_name is not None
        }
        name = devices.free_device_name(in_use, self.settings.device_root)
        if name is None:
            raise BackendError(
                f"instance {identity.instance} has no free device name left for EBS volumes "
                f"(/dev/xvd[{devices.DEVICE_LETTERS[0]}-{devices.DEVICE_LETTERS[-1]}] in use)"
            )
        return name

    def attach_disk(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        self.ec2.call(
            "AttachVolume", VolumeId=disk.id, InstanceId=identity.instance, Device=device_name
        )

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        params: dict[str, Any] = {"VolumeId": disk.id, "InstanceId": instance}
        if force:
            params["Force"] = True
        try:
            self.ec2.call("DetachVolume", **params)
        except CloudError as error:
            if error.code != "IncorrectState":  # already detaching or detached
                raise

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        s = self.settings
        return devices.candidate_paths(disk.id, attachment.device_name, s.device_root, s.by_id_dir)

    def resize_disk(self, disk: Disk, size: int) -> None:
        gib = math.ceil(size / GIB)
        # The volume's own type and IOPS decide what the new size may be (io1/io2 need iops).
        facts = disk.facts
        options = {"type": str(facts.get("type") or DEFAULT_TYPE), "size": str(gib * GIB)}
        if facts.get("iops") and VOLUME_TYPES[options["type"]].iops:
            options["iops"] = str(facts["iops"])
        check_volume_options(options)
        self.ec2.call("ModifyVolume", VolumeId=disk.id, Size=gib)
        wait_until(
            lambda: self._modified(disk.id, gib),
            self.settings.create_timeout,
            f"EBS volume {disk.id} to grow to {gib} GiB",
            self.settings.poll_max,
        )

    def _modified(self, volume_id: str, gib: int) -> bool | None:
        states = self.ec2.call("DescribeVolumesModifications", VolumeIds=[volume_id])
        for change in states.get("VolumesModifications", []):
            if change.get("ModificationState") == "failed":
                raise BackendError(f"EC2 failed to grow {volume_id}: {change.get('StatusMessage')}")
            if change.get("TargetSize") == gib and change.get("ModificationState") in (
                "optimizing",
                "completed",
            ):
                return True
        return None

    # facts ---------------------------------------------------------------------------------
    def options_of(self, disk: Disk) -> dict[str, str]:
        facts = disk.facts
        options = {
            "size": str(disk.size),
            "type": str(facts["type"]),
            "encrypted": "true" if facts.get("encrypted") else "false",
        }
        if disk.zone:
            options["availability_zone"] = disk.zone
        for key in ("iops", "throughput"):
            if facts.get(key):
                options[key] = str(facts[key])
        return options

    def describe(self, record: Mapping[str, Any]) -> dict[str, Any]:
        facts = {
            "volume_id": record.get("disk_id") or record.get("volume_id"),
            "type": record.get("type"),
            "size_gib": (record["size"] // GIB) if record.get("size") else record.get("size_gib"),
            "iops": record.get("iops"),
            "availability_zone": record.get("zone") or record.get("availability_zone"),
            "encrypted": record.get("encrypted"),
        }
        if record.get("throughput"):
            facts["throughput"] = record["throughput"]
        return facts

    @classmethod
    def host_checks(cls) -> list[Check]:
        try:
            import boto3

            return [Check("python package boto3", True, boto3.__version__)]
        except ImportError:
            return [Check("python package boto3", False, "not installed", "pip install boto3")]

    # snapshots -----------------------------------------------------------------------------
    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        tags = tags_of(labels, name)
        created = self.ec2.call(
            "CreateSnapshot",
            VolumeId=disk.id,
            Description=f"orlop {labels.get(LABEL_NAMESPACE)}/{labels.get(LABEL_VOLUME)}: {name}",
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
        )
        return _snapshot(created)

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        filters = tag_filters(namespace, volume, name)
        found = self.ec2.paginate(
            "DescribeSnapshots", "Snapshots", OwnerIds=["self"], Filters=filters
        )
        return [_snapshot(s) for s in found]

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        try:
            found = self.ec2.call("DescribeSnapshots", SnapshotIds=[snapshot_id])["Snapshots"]
        except CloudError as error:
            if error.kind not in (ErrorKind.NOT_FOUND, ErrorKind.INVALID):
                raise
            return None
        return _snapshot(found[0]) if found else None

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        try:
            self.ec2.call("DeleteSnapshot", SnapshotId=snapshot.id)
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise

    def is_snapshot_id(self, text: str) -> bool:
        return text.startswith("snap-")


def _disk(volume: Mapping[str, Any]) -> Disk:
    attachments = [
        Attachment(a["InstanceId"], a["State"], a.get("Device"))
        for a in volume.get("Attachments", [])
        if a.get("State") in ("attaching", "attached", "detaching")
    ]
    return Disk(
        id=volume["VolumeId"],
        name=volume["VolumeId"],
        size=int(volume["Size"]) * GIB,
        state=_STATES.get(volume.get("State", ""), "error"),
        zone=volume.get("AvailabilityZone"),
        labels=labels_of(volume),
        attachments=attachments,
        facts={
            "type": volume.get("VolumeType"),
            "iops": volume.get("Iops"),
            "throughput": volume.get("Throughput"),
            "encrypted": bool(volume.get("Encrypted")),
            "kms_key_id": volume.get("KmsKeyId"),
            "snapshot_id": volume.get("SnapshotId") or None,
        },
        created_at=_rfc3339(volume.get("CreateTime")),
    )


def _snapshot(found: Mapping[str, Any]) -> Snapshot:
    labels = labels_of(found)
    return Snapshot(
        id=found["SnapshotId"],
        name=labels.get(LABEL_SNAPSHOT, ""),
        volume=labels.get(LABEL_VOLUME, ""),
        state=str(found.get("State", "")),
        size=int(found["VolumeSize"]) * GIB if found.get("VolumeSize") else None,
        created_at=_rfc3339(found.get("StartTime")) or str(found.get("StartTime") or ""),
        labels=labels,
        facts={
            "volume_id": found.get("VolumeId"),
            "progress": found.get("Progress"),
            "size_gib": found.get("VolumeSize"),
            "encrypted": bool(found.get("Encrypted")),
        },
    )


def _rfc3339(moment: Any) -> str | None:
    return rfc3339(moment) if isinstance(moment, datetime.datetime) else None
