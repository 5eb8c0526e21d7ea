"""OpenStack Cinder volumes, attached the way a Nova instance attaches them.

Cinder keeps the volumes, their metadata (Orlop's labels, raw values: Cinder metadata is
free text up to 255 characters) and snapshots; Nova's `os-volume_attachments` attaches one
to this server (Nova then drives Cinder's attachments API: reserve, connect, complete).
The guest sees a virtio disk whose serial is the volume ID cut to 20 characters.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from orlop.backends.base import Check
from orlop.backends.cloud import naming
from orlop.backends.cloud.api import (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_TOKEN,
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
from orlop.backends.cloud.cinder import snapshots
from orlop.backends.cloud.cinder.client import (
    connect,
    metadata_instance,
    raise_cloud_error,
    translated,
)
from orlop.backends.cloud.cinder.labels import PREFIX, encode, matches
from orlop.backends.cloud.cinder.limits import DEFAULT_SIZE, at_least, check_type, check_zone
from orlop.backends.cloud.cinder.resources import UUID, CinderAttachment, canonical_text, to_disk
from orlop.backends.cloud.cinder.settings import CinderSettings
from orlop.backends.cloud.waiting import wait_until
from orlop.core.model import InvalidOption, NotFound
from orlop.core.options import GIB, Option, OptionSet, canonical_gib_size


class CinderProvider:
    kind: ClassVar[str] = "cinder"
    disk_word: ClassVar[str] = "Cinder volume"
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option(
                "size",
                canonical_gib_size,
                "size, 1G or more, rounded up to whole GiB (default 10G)",
            ),
            Option("type", canonical_text, "Cinder volume type (default: the cloud's)"),
            Option("availability_zone", canonical_text, "Cinder availability zone"),
            Option("from_snapshot", canonical_text, "snapshot ID or Orlop snapshot name"),
            Option("from_volume", canonical_text, "clone: a Cinder volume ID or Orlop volume"),
        ]
    )
    settings_model: ClassVar[type[CloudSettings]] = CinderSettings
    # Cinder itself refuses a second attachment of a volume that is not multiattach: its
    # reserve is a conditional update of the volume's status ("status must be available or
    # downloading to reserve, but the current status is attaching/in-use"), so two hosts
    # racing get one success and one 400 — tried against the real Cinder in the tests.
    refuses_second_attach: ClassVar[bool] = True

    def __init__(self, settings: CloudSettings, state_dir: str) -> None:
        assert isinstance(settings, CinderSettings)
        self.settings = settings
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._conn: Any = None
        self._identity: Identity | None = None
        self._sent_tokens: set[str] = set()
        self._attaching: dict[str, str] = {}  # volume → this server, while Nova attaches it

    # connection and identity ---------------------------------------------------------------
    @property
    def conn(self) -> Any:
        with self._lock:
            if self._conn is None:
                with translated("connecting to OpenStack"):
                    conn = connect(self.settings)
                    # proxies are made lazily; make them here, once, not in racing threads
                    _ = conn.block_storage, conn.compute
                self._conn = conn
            return self._conn

    def identity(self) -> Identity:
        with self._lock:
            if self._identity is not None:
                return self._identity
        instance = self.settings.instance_id
        if instance is None:
            instance, _zone = metadata_instance(self.settings)
        with translated(f"looking up instance {instance} in Nova"):
            try:
                self.conn.compute.get_server(instance)
            except Exception as error:
                if getattr(error, "status_code", None) == 404:
                    raise CloudError(
                        f"instance {instance} does not exist in Nova: set instance_id to this "
                        "server's UUID (openstack server show), or leave it unset on a Nova "
                        "instance",
                        ErrorKind.NOT_FOUND,
                    ) from None
                raise
        # Cinder's availability zones are not Nova's and Nova attaches across them unless
        # cross_az_attach is off: no zone restriction here.
        identity = Identity(instance=instance, zone=None, region=self.settings.region)
        with self._lock:
            self._identity = identity
        return identity

    # options ------------------------------------------------------------------------------
    def validate(self, options: dict[str, str]) -> None:
        if "from_snapshot" in options and "from_volume" in options:
            raise InvalidOption(
                "from_snapshot and from_volume exclude each other: a volume starts from one source"
            )

    # disks --------------------------------------------------------------------------------
    def create_disk(self, spec: DiskSpec, identity: Identity) -> Disk:
        options = spec.options
        check_type(self.conn, options.get("type"))
        check_zone(self.conn, options.get("availability_zone"))
        size = int(options["size"]) if "size" in options else None
        source: Disk | None = None
        if "from_volume" in options:
            source = self._source_volume(spec.namespace, options["from_volume"])
            size = at_least(size, source.size, f"volume {options['from_volume']}")
        if spec.snapshot is not None and spec.snapshot.size is not None:
            size = at_least(size, spec.snapshot.size, f"snapshot {spec.snapshot.id}")
        # Cinder takes no client token: a create this process sent before (a retry after an
        # error that may have hidden a success) is looked for by its token first. Across a
        # restart the layer finds the volume by its name label before creating.
        if spec.token in self._sent_tokens:
            for disk in self._volumes({PREFIX + LABEL_TOKEN: spec.token}):
                return disk
        self._sent_tokens.add(spec.token)
        attrs: dict[str, Any] = {
            "size": math.ceil((size or DEFAULT_SIZE) / GIB),
            "name": naming.disk_name(spec.namespace, spec.volume, max_length=255),
            "description": f"Docker volume {spec.volume} (Orlop, namespace {spec.namespace})",
            "metadata": encode(spec.labels),
        }
        if "type" in options:
            attrs["volume_type"] = options["type"]
        if "availability_zone" in options:
            attrs["availability_zone"] = options["availability_zone"]
        if spec.snapshot is not None:
            attrs["snapshot_id"] = spec.snapshot.id
        if source is not None:
            attrs["source_volid"] = source.id
        with translated(f"creating Cinder volume for {spec.volume}"):
            return self._disk(self.conn.block_storage.create_volume(**attrs))

    def get_disk(self, disk_id: str) -> Disk | None:
        with translated(f"reading Cinder volume {disk_id}"):
            try:
                volume = self.conn.block_storage.get_volume(disk_id)
            except Exception as error:
                if getattr(error, "status_code", None) == 404:
                    return None
                raise
        disk = self._disk(volume)
        return None if disk.state == "deleting" else disk

    def find_disks(self, namespace: str, volume: str | None = None) -> list[Disk]:
        wanted = {PREFIX + LABEL_MANAGED: "orlop", PREFIX + LABEL_NAMESPACE: namespace}
        if volume is not None:
            wanted[PREFIX + LABEL_VOLUME] = volume
        return [disk for disk in self._volumes(wanted) if disk.state != "deleting"]

    def delete_disk(self, disk: Disk) -> None:
        # `orlop snapshot rm` returns when Cinder accepted the delete; Cinder counts the
        # snapshot until it is gone, and for a moment after it left the listing. A refusal
        # with no live snapshot left is that moment: try again until the timeout.
        wait_until(
            lambda: self._delete_once(disk) or None,
            self.settings.create_timeout,
            f"the deleted snapshots of Cinder volume {disk.id} to go",
            self.settings.poll_max,
        )

    def _delete_once(self, disk: Disk) -> bool:
        """Ask Cinder to delete the volume: True when it is deleted or going, False to retry."""
        try:
            self.conn.block_storage.delete_volume(disk.id, ignore_missing=True)
            return True
        except Exception as error:
            if getattr(error, "status_code", None) != 400:
                raise_cloud_error(f"deleting Cinder volume {disk.id}", error)
            current = self.get_disk(disk.id)
            if current is None:
                return True  # being deleted already (Cinder refuses a second delete)
            states = self._snapshot_states(disk.id)
            if any(state not in ("deleting", "deleted") for state in states):
                raise CloudError(
                    f"Cinder refuses to delete volume {disk.id}: it has snapshots; remove "
                    "them first (orlop snapshot rm), or keep the volume (keep_on_remove=true)",
                    ErrorKind.INVALID,
                ) from None
            if states or (current.facts.get("status") == "available" and not current.attachments):
                return False  # snapshots going, or just gone: Cinder still counted them
            raise_cloud_error(f"deleting Cinder volume {disk.id}", error)

    def set_labels(self, disk: Disk, labels: Mapping[str, str | None]) -> None:
        put = {PREFIX + k: v for k, v in labels.items() if v is not None}
        drop = [PREFIX + k for k, v in labels.items() if v is None]
        with translated(f"setting metadata of Cinder volume {disk.id}"):
            if put:
                self.conn.block_storage.set_volume_metadata(disk.id, **put)
            for key in drop:  # one by one: the batch form fails whole on a missing key
                try:
                    self.conn.block_storage.delete_volume_metadata(disk.id, keys=[key])
                except Exception as error:
                    if getattr(error, "status_code", None) != 404:
                        raise

    # attachments --------------------------------------------------------------------------
    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        return None  # Nova (libvirt) picks the next free vdX and ignores a requested name

    def attach_disk(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        try:
            self.conn.compute.create_volume_attachment(identity.instance, volume=disk.id)
            self._attaching[disk.id] = identity.instance
        except Exception as error:
            status = getattr(error, "status_code", None)
            detail = str(getattr(error, "details", "") or "")
            if status == 400 and "already attached" in detail:
                return  # Nova: to this very server already (a repeated attach)
            if status == 400 and "status must be" in detail:
                now = self.get_disk(disk.id)
                holders = [a.instance for a in (now.others(identity.instance) if now else [])]
                if not holders:  # detaching from here, extending, …: a passing state
                    raise CloudError(
                        f"Cinder volume {disk.id} is not available yet: {detail}",
                        ErrorKind.RETRYABLE,
                        code="400",
                    ) from None
                raise CloudError(
                    f"Cinder volume {disk.id} is attached to {', '.join(holders)}: {detail}",
                    ErrorKind.IN_USE,
                    code="400",
                    holder=holders[0],
                ) from None
            raise_cloud_error(f"attaching Cinder volume {disk.id} to {identity.instance}", error)

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        what = f"detaching Cinder volume {disk.id} from {instance}"
        self._attaching.pop(disk.id, None)
        if force and not self._server_exists(instance):
            # Nova cannot detach from a server it no longer has: end Cinder's attachment
            # directly, as an operator does with `cinder attachment-delete`.
            with translated(what):
                for attachment in self._attachments(disk.id):
                    if attachment.instance == instance:
                        self.conn.block_storage.delete_attachment(attachment.id)
            return
        try:
            self.conn.compute.delete_volume_attachment(instance, disk.id, ignore_missing=False)
        except Exception as error:
            status = getattr(error, "status_code", None)
            if status == 404:
                return  # not attached there (any more)
            if status == 400:  # Nova: still attaching, cannot begin detaching yet
                detail = getattr(error, "details", "")
                raise CloudError(f"{what}: {detail}", ErrorKind.RETRYABLE) from None
            raise_cloud_error(what, error)

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        serial = disk.id[:20]  # virtio-blk serials hold 20 bytes; Nova sets the volume ID
        return [
            f"{self.settings.by_id_dir}/virtio-{serial}",
            f"{self.settings.by_id_dir}/scsi-0QEMU_QEMU_HARDDISK_{serial}",  # virtio-scsi
        ]

    def resize_disk(self, disk: Disk, size: int) -> None:
        gib = math.ceil(size / GIB)
        if gib * GIB <= disk.size:
            return
        with translated(f"extending Cinder volume {disk.id} to {gib} GiB"):
            self.conn.block_storage.extend_volume(disk.id, gib)

    def options_of(self, disk: Disk) -> dict[str, str]:
        options = {"size": str(disk.size)}
        if disk.facts.get("type"):
            options["type"] = str(disk.facts["type"])
        if disk.zone:
            options["availability_zone"] = disk.zone
        return options

    def describe(self, record: Mapping[str, Any]) -> dict[str, Any]:
        # not "status": the record keeps it from the create, stale by now
        keys = ("disk_id", "disk_name", "type", "zone", "size", "multiattach", "encrypted")
        return {key: record[key] for key in keys if record.get(key) is not None}

    @classmethod
    def host_checks(cls) -> list[Check]:
        try:
            import openstack.version

            version = openstack.version.__version__
            return [Check("python package openstacksdk", True, version)]
        except ImportError:
            return [
                Check(
                    "python package openstacksdk",
                    False,
                    "not installed",
                    "pip install 'orlop[cinder]'",
                )
            ]

    # snapshots: the calls are in snapshots.py ---------------------------------------------
    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        return snapshots.create(self.conn, disk, name, labels)

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        return snapshots.find(self.conn, namespace, volume, name)

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        return snapshots.get(self.conn, snapshot_id)

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        snapshots.delete(self.conn, snapshot)

    def is_snapshot_id(self, text: str) -> bool:
        return bool(UUID.match(text))

    # helpers ------------------------------------------------------------------------------
    def _source_volume(self, namespace: str, source: str) -> Disk:
        if UUID.match(source):
            disk = self.get_disk(source)
        else:
            disk = next(iter(self.find_disks(namespace, source)), None)
        if disk is None:
            raise NotFound(f"from_volume: no Cinder volume or Orlop volume {source!r}")
        return disk

    def _volumes(self, wanted: Mapping[str, str]) -> list[Disk]:
        with translated("listing Cinder volumes"):
            # Cinder reads the filter with ast.literal_eval: a JSON object of strings is one
            found = self.conn.block_storage.volumes(details=True, properties=json.dumps(wanted))
            # Cinder filters on metadata itself; checked again so a cloud that ignores the
            # filter (an old resource_filters.json) cannot hand over a stranger's volume
            return [self._disk(v) for v in found if matches(v.metadata, wanted)]

    def _disk(self, volume: Any) -> Disk:
        if volume.status not in ("reserved", "attaching"):
            self._attaching.pop(volume.id, None)
        return to_disk(volume, self._reserved)

    def _reserved(self, volume_id: str) -> list[CinderAttachment]:
        """Who a reserved (attaching) volume is for. After our own accepted attach that is
        us (Cinder reserves a volume for one server at a time): no call to ask."""
        mine = self._attaching.get(volume_id)
        return [CinderAttachment("", mine)] if mine else self._attachments(volume_id)

    def _attachments(self, volume_id: str) -> list[CinderAttachment]:
        with translated(f"listing attachments of Cinder volume {volume_id}"):
            found = self.conn.block_storage.attachments(volume_id=volume_id)
            return [
                CinderAttachment(a.id, str(a.instance))
                for a in found
                if a.instance and a.status not in ("detached", "deleted")
            ]

    def _snapshot_states(self, volume_id: str) -> list[str]:
        with translated(f"listing snapshots of Cinder volume {volume_id}"):
            return [s.status for s in self.conn.block_storage.snapshots(volume_id=volume_id)]

    def _server_exists(self, instance: str) -> bool:
        with translated(f"looking up instance {instance} in Nova"):
            try:
                self.conn.compute.get_server(instance)
            except Exception as error:
                if getattr(error, "status_code", None) == 404:
                    return False
                raise
            return True
