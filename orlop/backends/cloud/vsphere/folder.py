"""The datastore folder that holds the volumes — the source of truth for which exist.

Listing goes through the datastore browser (one search per datastore, matching a
namespace's file names); each VMDK's metadata file (`labels.py`) is read over the datastore
file API. A VMDK whose metadata file is missing (a create cut short between the two writes)
is named from its file name.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from orlop.backends.cloud.api import (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_VOLUME,
    CloudError,
    ErrorKind,
)
from orlop.backends.cloud.vsphere.client import Vsphere, vim
from orlop.backends.cloud.vsphere.files import DiskPath
from orlop.backends.cloud.vsphere.labels import dump_metadata, load_metadata

log = logging.getLogger(__name__)


class VolumeFolder:
    def __init__(self, api: Vsphere, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def write_metadata(self, path: DiskPath, labels: dict[str, str], facts: dict[str, Any]) -> None:
        self.api.write_file(path.datastore, path.metadata, dump_metadata(labels, facts))

    def list(self, store: str, folder: str, patterns: list[str]) -> dict[str, dict[str, Any]]:
        """base name → {"capacity": bytes or None, "metadata": bool} for the disks in a folder."""
        datastore = self.api.datastore(store)
        spec = vim.host.DatastoreBrowser.SearchSpec(
            matchPattern=patterns,
            details=vim.host.DatastoreBrowser.FileInfo.Details(fileType=True, fileSize=True),
            query=[
                vim.host.DatastoreBrowser.VmDiskQuery(
                    details=vim.host.DatastoreBrowser.VmDiskQuery.Details(capacityKb=True)
                ),
                vim.host.DatastoreBrowser.Query(),
            ],
        )
        what = f"listing [{store}] {folder}"
        task = self.api.call(
            what, lambda: datastore.browser.SearchDatastore_Task(f"[{store}] {folder}", spec)
        )
        try:
            result = self.api.wait(task, what)
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return {}  # no folder yet: no volumes
            raise
        listed: dict[str, dict[str, Any]] = {}
        for info in result.file or []:
            base, ext = os.path.splitext(info.path)
            entry = listed.setdefault(base, {"capacity": None, "metadata": False, "vmdk": False})
            if ext == ".vmdk":
                entry["vmdk"] = True
                capacity = getattr(info, "capacityKb", None)
                entry["capacity"] = capacity * 1024 if capacity else None
            elif ext == ".json":
                entry["metadata"] = True
        return {base: entry for base, entry in listed.items() if entry["vmdk"]}

    def metadata(self, path: DiskPath, exists: bool) -> tuple[dict[str, str], dict[str, Any]]:
        raw = self.api.read_file(path.datastore, path.metadata) if exists else None
        loaded = load_metadata(raw) if raw is not None else None
        if loaded is not None:
            return loaded
        if raw is not None:
            log.warning("ignoring unreadable metadata of %s", path.id)
        # No metadata (a create cut short between the two writes): the file name tells.
        name = path.volume()
        if name is None:
            return {}, {}
        labels = {LABEL_MANAGED: "orlop", LABEL_VOLUME: name}
        if path.in_namespace(self.namespace):
            labels[LABEL_NAMESPACE] = self.namespace
        return labels, {}

    def delete(self, path: DiskPath, strict: bool = False) -> None:
        dc = self.api.datacenter()
        disks, files_ = self.api.content.virtualDiskManager, self.api.content.fileManager
        metadata = f"[{path.datastore}] {path.metadata}"
        steps = [
            (f"deleting {path.id}", lambda: disks.DeleteVirtualDisk_Task(path.id, dc)),
            (f"deleting {metadata}", lambda: files_.DeleteDatastoreFile_Task(metadata, dc)),
        ]
        for what, start in steps:
            try:
                self.api.wait(self.api.call(what, start), what)
            except CloudError as error:
                if error.kind is ErrorKind.NOT_FOUND:
                    continue
                if strict:
                    raise
                log.error("cleaning up after a failed create: %s", error)

    def mkdir(self, folder: str) -> None:
        with contextlib.suppress(vim.fault.FileAlreadyExists):
            self.api.content.fileManager.MakeDirectory(folder, self.api.datacenter(), True)

    def uuid(self, disk_id: str) -> str:
        manager = self.api.content.virtualDiskManager
        dc = self.api.datacenter()
        value: str = self.api.call(
            f"reading the UUID of {disk_id}", lambda: manager.QueryVirtualDiskUuid(disk_id, dc)
        )
        return value
