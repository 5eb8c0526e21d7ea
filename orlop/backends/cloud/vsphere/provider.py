"""VMware vSphere virtual disks: the `vsphere` CloudProvider, through pyVmomi.

A volume is a VMDK in a datastore folder (`labels.py` names it, `files.py` is its path)
with a small metadata file beside it for Orlop's labels. The folder is the source of
truth: any VM that sees the datastore lists the same volumes. A disk attaches to this VM
with ReconfigVM_Task on a paravirtual SCSI controller at a free unit (a new controller when
all are full) and detaches without its file being destroyed. The guest shows it by the disk's UUID
(`disk.EnableUUID`): `/dev/disk/by-id/wwn-0x6000c29…` and `scsi-36000c29…`.

vSphere refuses a second attachment only through the VMFS file lock of a running VM, which
a simulator does not have and a powered-off VM does not take: `refuses_second_attach` is
False and the layer's claim guard (a `claim` label in the metadata file) protects instead.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from orlop.backends.base import Check
from orlop.backends.cloud.api import (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    Attachment,
    CloudError,
    CloudSettings,
    Disk,
    DiskSpec,
    ErrorKind,
    Identity,
    Snapshot,
)
from orlop.backends.cloud.vsphere import snapshots, vmdisks
from orlop.backends.cloud.vsphere.client import Vsphere, vim
from orlop.backends.cloud.vsphere.files import DiskPath
from orlop.backends.cloud.vsphere.folder import VolumeFolder
from orlop.backends.cloud.vsphere.labels import namespace_tag
from orlop.backends.cloud.vsphere.settings import (
    DEFAULT_SIZE,
    DISK_MODES,
    DISK_TYPES,
    MIB,
    OPTIONS,
    VsphereSettings,
)
from orlop.backends.cloud.vsphere.snapshots import FcdSnapshots
from orlop.core.model import Conflict, InvalidOption, NotFound
from orlop.core.options import OptionSet

log = logging.getLogger(__name__)


class VsphereProvider:
    kind: ClassVar[str] = "vsphere"
    disk_word: ClassVar[str] = "virtual disk"
    settings_model: ClassVar[type[CloudSettings]] = VsphereSettings
    refuses_second_attach: ClassVar[bool] = False  # see the module's docstring
    options: ClassVar[OptionSet] = OPTIONS

    def __init__(self, settings: CloudSettings, state_dir: str) -> None:
        assert isinstance(settings, VsphereSettings)
        self.settings = settings
        self.api = Vsphere(settings)
        self.folder = VolumeFolder(self.api, settings.namespace)
        self.snapshots = FcdSnapshots(self.api, self._write_fact)
        self._identity: Identity | None = None
        self._lock = threading.Lock()

    # identity ------------------------------------------------------------------------------

    def close(self) -> None:
        """Log out of vCenter (at shutdown; the session is otherwise kept)."""
        self.api.close()

    def identity(self) -> Identity:
        with self._lock:
            if self._identity is None:
                self._identity = self._find_me()
            return self._identity

    def _find_me(self) -> Identity:
        uuid = self.settings.vm_uuid
        if not self.settings.vm_name and not uuid:
            try:
                with open(self.settings.dmi_uuid_file, encoding="ascii") as file:
                    uuid = file.read().strip().lower()
            except OSError as error:
                raise CloudError(
                    f"cannot read this machine's BIOS UUID from {self.settings.dmi_uuid_file} "
                    f"({error.strerror}): set vm_uuid or vm_name",
                    ErrorKind.INVALID,
                ) from None
        vm = self.api.find_vm(uuid, self.settings.vm_name)
        dc = self.api.datacenter()
        if vm is None:
            which = (
                f"named {self.settings.vm_name}" if self.settings.vm_name else f"with UUID {uuid}"
            )
            raise CloudError(
                f"no VM {which} in datacenter {dc.name}: is this machine a VM of that vCenter? "
                "Set vm_uuid (config.uuid) or vm_name",
                ErrorKind.NOT_FOUND,
            )
        extra = self.api.call("reading the VM's settings", lambda: vm.config.extraConfig)
        enabled = any(
            o.key.lower() == "disk.enableuuid" and str(o.value).lower() == "true" for o in extra
        )
        if not enabled:
            raise CloudError(
                f"VM {vm._moId} lacks disk.EnableUUID=TRUE, so its guest cannot show disks by "
                "UUID: power it off, set that advanced setting, power it on",
                ErrorKind.INVALID,
            )
        return Identity(instance=vm._moId, what="VM")

    # options -------------------------------------------------------------------------------
    def validate(self, options: dict[str, str]) -> None:
        """Each option is checked on its own by OPTIONS; what needs the datastore (does it
        exist, is there room, does the clone source exist) create_disk checks first."""

    def _path(self, spec_datastore: str | None, namespace: str, volume: str) -> DiskPath:
        store = spec_datastore or self.settings.datastore
        return DiskPath.of(store, self.settings.folder, namespace, volume)

    # create --------------------------------------------------------------------------------
    def create_disk(self, spec: DiskSpec, identity: Identity) -> Disk:
        options = spec.options
        path = self._path(options.get("datastore"), spec.namespace, spec.volume)
        store = self.api.datastore(path.datastore)
        source = self._clone_source(options.get("clone_from"), spec.namespace)
        size = int(options.get("size") or (source.size if source else DEFAULT_SIZE))
        if source is not None and size < source.size:
            raise InvalidOption(
                f"size {size} is smaller than volume {options['clone_from']} ({source.size} "
                "bytes) that it clones: a clone is at least as large as its source"
            )
        diskformat = options.get("diskformat", "thin")
        self._check_room(store, size, diskformat)
        existing = self.get_disk(path.id)
        if existing is not None:
            if existing.labels.get("create-token") == spec.token:
                return existing  # the same create, repeated
            raise Conflict(
                f"{path.id} exists already but is not volume {spec.volume} of namespace "
                f"{spec.namespace} as Orlop made it: rename or delete that file, or pick "
                "another name"
            )
        self.api.call(
            f"creating folder {path.folder_id}",
            lambda: self.folder.mkdir(path.folder_id),
        )
        dc = self.api.datacenter()
        manager = self.api.content.virtualDiskManager
        if source is not None:
            task = self.api.call(
                f"copying {source.id} to {path.id}",
                lambda: manager.CopyVirtualDisk_Task(source.id, dc, path.id, dc, None, False),
            )
        else:
            disk_spec = vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
                diskType=DISK_TYPES[diskformat], adapterType="lsiLogic", capacityKb=size // 1024
            )
            task = self.api.call(
                f"creating {path.id}",
                lambda: manager.CreateVirtualDisk_Task(path.id, dc, disk_spec),
            )
        try:
            self.api.wait(task, f"creating {path.id}")
            if source is not None and size > source.size:
                self._extend_file(path.id, size)
            uuid = self.folder.uuid(path.id)
            facts = {
                "size": size,
                "diskformat": source.facts.get("diskformat", diskformat) if source else diskformat,
                "attach_as": options.get("attach_as", "persistent"),
                "access": options.get("access", "read-write"),
                "uuid": uuid,
            }
            if source is not None:
                facts["cloned_from"] = options["clone_from"]
            self.folder.write_metadata(path, spec.labels, facts)
        except CloudError:
            self.folder.delete(path)  # nothing half-made stays behind
            raise
        made = self.get_disk(path.id)
        if made is None:
            raise CloudError(f"{path.id} vanished right after it was created", ErrorKind.FAILED)
        return made

    def _clone_source(self, name: str | None, namespace: str) -> Disk | None:
        if not name:
            return None
        found = self.find_disks(namespace, name)
        if not found:
            raise NotFound(f"clone_from: volume {name} does not exist in namespace {namespace}")
        source = found[0]
        if source.attachments:
            raise Conflict(
                f"clone_from: volume {name} is attached to VM {source.attachments[0].instance}; "
                "unmount it first so that the copy is consistent"
            )
        return source

    def _check_room(self, store: Any, size: int, diskformat: str) -> None:
        summary = self.api.call("reading a datastore's capacity", lambda: store.summary)
        capacity, free = int(summary.capacity or 0), int(summary.freeSpace or 0)
        # A thin disk takes room as it is written, so it must fit the datastore; a thick one
        # takes it all now, so it must fit the free space.
        room, what = (capacity, "capacity") if diskformat == "thin" else (free, "free space")
        if room and size > room:
            raise InvalidOption(
                f"a {diskformat} disk of {size} bytes does not fit datastore {summary.name} "
                f"({what} {room} bytes): ask for less, or use another datastore"
            )

    # read ----------------------------------------------------------------------------------
    def get_disk(self, disk_id: str) -> Disk | None:
        path = DiskPath.parse(disk_id)
        if path is None:
            return None
        listed = self.folder.list(
            path.datastore, path.folder, [f"{path.base}.vmdk", f"{path.base}.json"]
        )
        if path.base not in listed:
            return None
        return self._disk(path, listed[path.base], vmdisks.attachments(self.api))

    def find_disks(self, namespace: str, volume: str | None = None) -> list[Disk]:
        tag = namespace_tag(namespace)
        stores = sorted(self.api.datastores())
        attachments: dict[str, list[Attachment]] | None = None
        found = []
        for store in stores:
            listed = self.folder.list(
                store, self.settings.folder, [f"*.{tag}.vmdk", f"*.{tag}.json"]
            )
            for base, info in listed.items():
                path = DiskPath(store, self.settings.folder, base)
                if volume is not None and path.volume() not in (volume, None):
                    continue
                if attachments is None:
                    attachments = vmdisks.attachments(self.api)
                disk = self._disk(path, info, attachments)
                if disk.labels.get(LABEL_MANAGED) != "orlop":
                    continue
                if disk.labels.get(LABEL_NAMESPACE) != namespace:
                    continue
                if volume is None or disk.volume == volume:
                    found.append(disk)
        return found

    def _disk(
        self, path: DiskPath, info: dict[str, Any], attachments: dict[str, list[Attachment]]
    ) -> Disk:
        labels, facts = self.folder.metadata(path, info["metadata"])
        size = info["capacity"] or int(facts.get("size") or 0)
        return Disk(
            id=path.id,
            name=path.base,
            size=size,
            state="ready",
            labels=labels,
            attachments=attachments.get(path.id, []),
            facts={**facts, "size": size, "datastore": path.datastore, "path": path.id},
        )

    # labels, delete ------------------------------------------------------------------------
    def set_labels(self, disk: Disk, labels: Mapping[str, str | None]) -> None:
        path = self._must_parse(disk.id)
        current, facts = self.folder.metadata(path, True)
        for key, value in labels.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        self.folder.write_metadata(path, current, facts)

    def _write_fact(self, disk: Disk, key: str, value: str) -> None:
        path = self._must_parse(disk.id)
        labels, facts = self.folder.metadata(path, True)
        self.folder.write_metadata(path, labels, {**facts, key: value})

    def delete_disk(self, disk: Disk) -> None:
        path = self._must_parse(disk.id)
        self.snapshots.delete_disk(disk)  # a first-class disk goes with its snapshots
        self.folder.delete(path, strict=True)

    def _must_parse(self, disk_id: str) -> DiskPath:
        path = DiskPath.parse(disk_id)
        if path is None:
            raise CloudError(f"{disk_id} is not a virtual disk path", ErrorKind.NOT_FOUND)
        return path

    # attach, detach ------------------------------------------------------------------------
    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        return None  # the provider picks the controller and unit in attach_disk

    def attach_disk(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        mode = DISK_MODES[disk.facts.get("attach_as", "persistent")]
        vmdisks.attach(self.api, identity.instance, disk.id, disk.size, mode)

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        vmdisks.detach(self.api, instance, disk.id)

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        uuid = str(disk.facts.get("uuid") or self.folder.uuid(disk.id))
        serial = re.sub(r"[^0-9a-f]", "", uuid.lower())
        by_id = self.settings.by_id_dir
        return [os.path.join(by_id, f"wwn-0x{serial}"), os.path.join(by_id, f"scsi-3{serial}")]

    # resize --------------------------------------------------------------------------------
    def resize_disk(self, disk: Disk, size: int) -> None:
        size = -(-size // MIB) * MIB
        if size <= disk.size:
            return
        if disk.attachments:
            # vSphere locks an attached disk's file: grow it through its VM (hot extend).
            for attachment in disk.attachments:
                vmdisks.extend(self.api, attachment.instance, disk.id, size)
        else:
            self._extend_file(disk.id, size)
        path = self._must_parse(disk.id)
        labels, facts = self.folder.metadata(path, True)
        self.folder.write_metadata(path, labels, {**facts, "size": size})

    def _extend_file(self, disk_id: str, size: int) -> None:
        manager = self.api.content.virtualDiskManager
        dc = self.api.datacenter()
        what = f"extending {disk_id}"
        task = self.api.call(
            what, lambda: manager.ExtendVirtualDisk_Task(disk_id, dc, size // 1024, False)
        )
        self.api.wait(task, what)

    # snapshots: first-class-disk snapshots (see snapshots.py) --------------------------------
    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        return self.snapshots.create(disk, name, labels)

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        found = self.snapshots.of_disks(self.find_disks(namespace, volume))
        return [
            s
            for s in found
            if s.labels.get(LABEL_NAMESPACE) == namespace
            and (volume is None or s.volume == volume)
            and (name is None or s.name == name)
        ]

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        return self.snapshots.get(snapshot_id)

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots.delete(snapshot)

    def is_snapshot_id(self, text: str) -> bool:
        return snapshots.is_snapshot_id(text)

    # facts ---------------------------------------------------------------------------------
    def options_of(self, disk: Disk) -> dict[str, str]:
        # A size of 0: unknown (no metadata, and a server that does not report capacities).
        options = {"size": str(disk.size or ""), "datastore": str(disk.facts.get("datastore", ""))}
        for key in ("diskformat", "attach_as", "access"):
            if disk.facts.get(key):
                options[key] = str(disk.facts[key])
        return {k: v for k, v in options.items() if v}

    def describe(self, record: Mapping[str, Any]) -> dict[str, Any]:
        keys = ["disk_id", "datastore", "diskformat", "attach_as", "access", "uuid", "cloned_from"]
        keys.append("fcd")
        return {key: record[key] for key in keys if record.get(key) is not None}

    @classmethod
    def host_checks(cls) -> list[Check]:
        try:
            import pyVmomi

            version = getattr(pyVmomi, "__version__", "installed")
            return [Check("python module pyVmomi", True, str(version))]
        except ImportError:
            return [
                Check("python module pyVmomi", False, "not found", "pip install orlop[vsphere]")
            ]
