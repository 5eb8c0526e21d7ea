"""AWS EBS volumes: a DeviceProvider for the shared block layer.

EC2 — not this host's database — is the source of truth. Every volume carries Orlop's tags
(namespace and Docker name), so Orlop on another host finds the same volume by name: a
Create of a name that EC2 already knows adopts that volume instead of making a second one.

Modules: `ec2` (API client: credentials, throttling retries, IMDSv2, waiting),
`ebs_limits` (volume types and their documented limits), `ebs_attach` (attach, preemption,
races, device discovery via `ebs_devices`), `ebs_snapshots`, `ebs_tags`. `EbsBackend` at
the end is what the `ebs` kind names: the shared block layer (format, mount, grow) over
this provider, plus snapshots and discovery.

Driver settings (all optional): region, endpoint_url, access_key_id, secret_access_key,
session_token, profile, instance_id, availability_zone, imds_endpoint, namespace,
device_root, by_id_dir, timeouts and retry knobs (see `Ec2Settings`).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import threading
import uuid
from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef, tool_check
from orlop.backends.block import filesystem
from orlop.backends.block.ebs_attach import AttachMixin
from orlop.backends.block.ebs_limits import (
    DEFAULT_TYPE,
    GIB,
    VOLUME_TYPES,
    canonical_count,
    canonical_gib_size,
    canonical_kms_key,
    canonical_snapshot,
    canonical_zone,
    check_volume_options,
    default_size_gib,
    requested_gib,
)
from orlop.backends.block.ebs_snapshots import SnapshotsMixin
from orlop.backends.block.ebs_tags import (
    TAG_MANAGED,
    TAG_NAMESPACE,
    TAG_TOKEN,
    TAG_VOLUME,
    VOLUME_TAGS,
    active_attachments,
    tag,
)
from orlop.backends.block.ec2 import Ec2, Ec2Error, Ec2Settings, instance_identity, wait_until
from orlop.backends.block.volume import BlockBackend
from orlop.core.model import BackendError, Conflict, InvalidOption
from orlop.core.options import Option, OptionSet, canonical_bool, one_of
from orlop.host.run import run

log = logging.getLogger(__name__)

GONE_STATES = ("deleting", "deleted")
BLOCK_LAYER_SETTINGS = frozenset({"allow_suid_dev"})


class EbsProvider(SnapshotsMixin, AttachMixin):
    kind: ClassVar[str] = "ebs"
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("size", canonical_gib_size, "size, rounded up to whole GiB (default 10G)"),
            Option("type", one_of(*VOLUME_TYPES), "EBS volume type (default gp3)"),
            Option("iops", canonical_count, "provisioned IOPS (gp3, io1, io2)"),
            Option("throughput", canonical_count, "throughput in MiB/s (gp3)"),
            Option("encrypted", canonical_bool, "encrypt the volume"),
            Option("kms_key_id", canonical_kms_key, "KMS key for encryption"),
            Option("availability_zone", canonical_zone, "zone (default: this instance's)"),
            Option("from_snapshot", canonical_snapshot, "snapshot ID or Orlop snapshot name"),
            Option("preempt", canonical_bool, "force-detach from another instance on mount"),
            Option("keep_on_remove", canonical_bool, "on remove keep the EBS volume, untagged"),
        ]
    )
    capabilities = Capabilities(scope="global", snapshot=True, resize=True, exclusive_attach=True)

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        # The block layer reads its own settings (allow_suid_dev) from the same mapping.
        self.settings = Ec2Settings.from_mapping(
            {k: v for k, v in context.settings.items() if k not in BLOCK_LAYER_SETTINGS}
        )
        self._identity: tuple[str, str] | None = None
        self._ec2: Ec2 | None = None
        self._lock = threading.Lock()
        self._attach_lock = threading.Lock()  # device names are per instance: one pick at a time
        self._state_dir = context.path("ebs")
        for sub in ("creating", "attached"):
            os.makedirs(os.path.join(self._state_dir, sub), mode=0o700, exist_ok=True)
        # Attachments this host made, by volume name, mirrored in memory for Status.
        self._attached: dict[str, dict[str, str]] = {}
        for name in os.listdir(os.path.join(self._state_dir, "attached")):
            if not name.endswith(".tmp"):
                self._attached[name] = json.loads(self._read(("attached", name)) or "{}")

    # identity and API ---------------------------------------------------------------------
    def identity(self) -> tuple[str, str]:
        """(instance ID, availability zone): from the settings, else from IMDSv2."""
        with self._lock:
            if self._identity is None:
                instance, zone = self.settings.instance_id, self.settings.availability_zone
                if not instance or not zone:
                    found = instance_identity(
                        self.settings.imds_endpoint, self.settings.imds_timeout
                    )
                    instance, zone = instance or found[0], zone or found[1]
                self._identity = (instance, zone)
            return self._identity

    @property
    def instance_id(self) -> str:
        return self.identity()[0]

    @property
    def ec2(self) -> Ec2:
        if self._ec2 is None:
            region = self.settings.region
            if region is None and self.settings.availability_zone:
                region = self.settings.availability_zone[:-1]
            if region is None and not os.environ.get("AWS_DEFAULT_REGION"):
                region = self.identity()[1][:-1]  # us-east-1a → us-east-1
            self._ec2 = Ec2(self.settings, region)
        return self._ec2

    def _describe(self, volume_id: str) -> dict[str, Any] | None:
        try:
            found = self.ec2.call("DescribeVolumes", VolumeIds=[volume_id])["Volumes"]
        except Ec2Error as error:
            if error.code == "InvalidVolume.NotFound":
                return None
            raise
        return found[0] if found and found[0]["State"] not in GONE_STATES else None

    def _must_describe(self, volume: VolumeRef) -> dict[str, Any]:
        found = self._describe(self._volume_id(volume))
        if found is None:
            raise BackendError(
                f"EBS volume {self._volume_id(volume)} of volume {volume.name} no longer exists "
                "in EC2; remove the volume from Orlop"
            )
        return found

    def _find_by_name(self, name: str) -> list[dict[str, Any]]:
        filters = [
            {"Name": f"tag:{TAG_NAMESPACE}", "Values": [self.settings.namespace]},
            {"Name": f"tag:{TAG_VOLUME}", "Values": [name]},
        ]
        found = self.ec2.paginate("DescribeVolumes", "Volumes", Filters=filters)
        return [v for v in found if v["State"] not in GONE_STATES]

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Every volume of this namespace in EC2: (name, options, record), for discovery."""
        filters = [{"Name": f"tag:{TAG_NAMESPACE}", "Values": [self.settings.namespace]}]
        found = self.ec2.paginate("DescribeVolumes", "Volumes", Filters=filters)
        volumes = []
        for volume in found:
            name = tag(volume, TAG_VOLUME)
            if name and volume["State"] not in GONE_STATES:
                options = {"size": str(volume["Size"] * GIB), "type": volume["VolumeType"]}
                volumes.append((name, options, {**self._record(volume), "adopted": True}))
        return volumes

    @staticmethod
    def _volume_id(volume: VolumeRef) -> str:
        volume_id: str | None = volume.record.get("volume_id")
        if not volume_id:
            raise BackendError(f"volume {volume.name} has no EBS volume ID in its record")
        return volume_id

    # DeviceProvider: validate, create, remove ---------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        check_volume_options(options)

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        existing = self._find_by_name(volume.name)
        if len(existing) > 1:
            ids = ", ".join(v["VolumeId"] for v in existing)
            raise Conflict(
                f"several EBS volumes carry the name {volume.name} in namespace "
                f"{self.settings.namespace}: {ids}; remove the Orlop tags from all but one"
            )
        if existing:
            # Not ours to delete if this create fails: forget any token of an earlier one.
            self._delete(("creating", volume.name))
            return self._adopt(volume, existing[0])
        options = volume.options
        zone = options.get("availability_zone") or self.identity()[1]
        self._check_zone(zone)
        snapshot = (
            self.resolve_snapshot(options["from_snapshot"], False)
            if ("from_snapshot" in options)
            else None
        )
        volume_type = options.get("type", DEFAULT_TYPE)
        size = requested_gib(options)
        if size is None:
            size = snapshot["VolumeSize"] if snapshot else default_size_gib(volume_type)
        elif snapshot and size < snapshot["VolumeSize"]:
            raise InvalidOption(
                f"size {size} GiB is smaller than snapshot {snapshot['SnapshotId']} "
                f"({snapshot['VolumeSize']} GiB): ask for at least that much"
            )
        check_volume_options({**options, "size": str(size * GIB)})
        token = uuid.uuid4().hex
        self._write(("creating", volume.name), token)  # before CreateVolume, see below
        params: dict[str, Any] = {
            "AvailabilityZone": zone,
            "Size": size,
            "VolumeType": volume_type,
            "ClientToken": token,
            "TagSpecifications": [
                {"ResourceType": "volume", "Tags": self._tags(volume.name, token)}
            ],
        }
        for option, param in (("iops", "Iops"), ("throughput", "Throughput")):
            if option in options:
                params[param] = int(options[option])
        if options.get("encrypted") == "true":
            params["Encrypted"] = True
            if "kms_key_id" in options:
                params["KmsKeyId"] = options["kms_key_id"]
        if snapshot:
            params["SnapshotId"] = snapshot["SnapshotId"]
        volume_id = self.ec2.call("CreateVolume", **params)["VolumeId"]
        log.info("created EBS volume %s for %s in %s", volume_id, volume.name, zone)
        created = wait_until(
            lambda: self._available(volume_id),
            self.settings.create_timeout,
            f"EBS volume {volume_id} to become available",
            self.settings.poll_max,
        )
        # The token stays until remove: after a crash before the service keeps the record,
        # recovery's remove (with an empty record) finds this volume by it and deletes it.
        return self._record(created)

    def _available(self, volume_id: str) -> dict[str, Any] | None:
        found = self._describe(volume_id)
        if found is not None and found["State"] == "error":
            raise BackendError(f"EC2 could not create EBS volume {volume_id} (state error)")
        return found if found is not None and found["State"] in ("available", "in-use") else None

    def _adopt(self, volume: VolumeRef, found: dict[str, Any]) -> dict[str, Any]:
        facts = {
            "type": found["VolumeType"],
            "size": str(found["Size"] * GIB),
            "availability_zone": found["AvailabilityZone"],
            "encrypted": "true" if found.get("Encrypted") else "false",
            "iops": str(found.get("Iops", "")),
            "throughput": str(found.get("Throughput", "")),
        }
        for option, actual in facts.items():
            asked = volume.options.get(option)
            if asked is not None and asked != actual:
                raise Conflict(
                    f"volume {volume.name} already exists in EC2 as {found['VolumeId']} with "
                    f"{option}={actual} (asked: {asked}); create it with matching options "
                    "or none"
                )
        log.info("adopted EBS volume %s as %s", found["VolumeId"], volume.name)
        return {**self._record(found), "adopted": True}

    def _check_zone(self, zone: str) -> None:
        try:
            zones = self.ec2.call("DescribeAvailabilityZones", ZoneNames=[zone])
        except Ec2Error as error:  # AWS refuses an unknown zone; moto answers an empty list
            if error.code not in ("InvalidParameterValue", "InvalidZone.NotFound"):
                raise
            zones = {"AvailabilityZones": []}
        if not zones.get("AvailabilityZones"):
            known = self.ec2.call("DescribeAvailabilityZones")["AvailabilityZones"]
            names = ", ".join(sorted(z["ZoneName"] for z in known))
            raise InvalidOption(
                f"unknown availability zone {zone} in region {self.ec2.region}: use one of {names}"
            )

    def _tags(self, name: str, token: str) -> list[dict[str, str]]:
        return [
            {"Key": TAG_MANAGED, "Value": "orlop"},
            {"Key": TAG_NAMESPACE, "Value": self.settings.namespace},
            {"Key": TAG_VOLUME, "Value": name},
            {"Key": TAG_TOKEN, "Value": token},
            {"Key": "Name", "Value": name},
        ]

    @staticmethod
    def _record(found: dict[str, Any]) -> dict[str, Any]:
        return {
            "volume_id": found["VolumeId"],
            "availability_zone": found["AvailabilityZone"],
            "type": found["VolumeType"],
            "size_gib": found["Size"],
            "iops": found.get("Iops"),
            "throughput": found.get("Throughput"),
            "encrypted": bool(found.get("Encrypted")),
            "kms_key_id": found.get("KmsKeyId"),
            "snapshot_id": found.get("SnapshotId") or None,
            "created_at": _rfc3339(found.get("CreateTime")),
        }

    def remove(self, volume: VolumeRef) -> None:
        volume_id = volume.record.get("volume_id") or self._journaled_volume(volume.name)
        found = self._describe(volume_id) if volume_id else None
        if found is not None:
            me = self.instance_id
            others = [a for a in active_attachments(found) if a["InstanceId"] != me]
            if others:
                raise Conflict(
                    f"EBS volume {found['VolumeId']} ({volume.name}) is attached to instance "
                    f"{others[0]['InstanceId']}: unmount it there first"
                )
            self._detach(found["VolumeId"])
            if volume.options.get("keep_on_remove") == "true":
                self.ec2.call(
                    "DeleteTags",
                    Resources=[found["VolumeId"]],
                    Tags=[{"Key": key} for key in VOLUME_TAGS],
                )
                log.info("kept EBS volume %s, dropped Orlop's tags", found["VolumeId"])
            else:
                try:
                    self.ec2.call("DeleteVolume", VolumeId=found["VolumeId"])
                except Ec2Error as error:
                    if error.code != "InvalidVolume.NotFound":
                        raise
                log.info("deleted EBS volume %s (%s)", found["VolumeId"], volume.name)
        self._delete(("creating", volume.name))
        self._forget_attachment(volume.name)

    def _journaled_volume(self, name: str) -> str | None:
        """The volume a create interrupted before its record was kept, found by its token."""
        token = self._read(("creating", name))
        if not token:
            return None
        filters = [{"Name": f"tag:{TAG_TOKEN}", "Values": [token]}]
        found = self.ec2.call("DescribeVolumes", Filters=filters)["Volumes"]
        return str(found[0]["VolumeId"]) if found else None

    def grow(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        volume_id, gib = self._volume_id(volume), math.ceil(size / GIB)
        found = self._must_describe(volume)
        if gib < found["Size"]:
            raise InvalidOption(f"EBS volumes cannot shrink: {found['Size']} GiB → {gib} GiB")
        if gib > found["Size"]:
            check_volume_options({"type": found["VolumeType"], "size": str(gib * GIB)})
            self.ec2.call("ModifyVolume", VolumeId=volume_id, Size=gib)
            wait_until(
                lambda: self._modified(volume_id, gib),
                self.settings.create_timeout,
                f"EBS volume {volume_id} to grow to {gib} GiB",
                self.settings.poll_max,
            )
        device = self.device_path(volume)
        if device is not None:
            wait_until(
                lambda: _device_bytes(device) >= gib * GIB or None,
                self.settings.attach_timeout,
                f"{device} to show {gib} GiB",
                self.settings.poll_max,
            )
        return {**volume.record, "size_gib": gib}

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

    # Status and doctor ---------------------------------------------------------------------
    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        record = volume.record
        facts = {key: record.get(key) for key in ("volume_id", "type", "size_gib", "iops")}
        facts["availability_zone"] = record.get("availability_zone")
        facts["encrypted"] = record.get("encrypted")
        if record.get("throughput"):
            facts["throughput"] = record["throughput"]
        known = self._attached.get(volume.name)
        facts["attachment"] = (
            {key: known.get(key) for key in ("instance_id", "device", "path")} if known else None
        )
        return facts

    @classmethod
    def host_checks(cls) -> list[Check]:
        freeze = tool_check("fsfreeze", "util-linux")  # snapshots of mounted volumes
        try:
            import boto3

            return [Check("python package boto3", True, boto3.__version__), freeze]
        except ImportError:
            boto = Check("python package boto3", False, "not installed", "pip install boto3")
            return [boto, freeze]


def _rfc3339(moment: Any) -> str | None:
    if not isinstance(moment, datetime.datetime):
        return None
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _device_bytes(device: str) -> int:
    name = os.path.basename(os.path.realpath(device))
    try:
        with open(f"/sys/class/block/{name}/size", encoding="ascii") as size:
            return int(size.read()) * 512
    except OSError:
        return 0


class EbsBackend(BlockBackend):
    """EBS volumes with a filesystem: the shared block layer over `EbsProvider`."""

    provider_class = EbsProvider
    provider: EbsProvider

    # Snapshottable: EBS snapshots of the volume's device ------------------------------------
    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        """Snapshot the volume; if it is mounted here, frozen for that instant (fsfreeze), so
        the snapshot holds a clean filesystem and not just a crash-consistent one."""
        target = self.mountpoint(volume)
        if filesystem.mounted_fs(target) is None:
            return self.provider.create_snapshot(volume, name)
        # EBS fixes a snapshot's content when CreateSnapshot returns: thaw right after.
        run(["fsfreeze", "--freeze", target], timeout=60)
        try:
            return self.provider.create_snapshot(volume, name)
        finally:
            run(["fsfreeze", "--unfreeze", target], timeout=60)

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        return self.provider.list_snapshots(volume)

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        return self.provider.delete_snapshot(snapshot)

    # Discoverable: EC2 is the source of truth for which volumes exist ----------------------
    @property
    def discover_interval(self) -> float:
        return self.provider.settings.discover_interval

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        return self.provider.list_volumes()
