"""Which disks are this namespace's volumes: creating one (idempotently, by a token kept on
disk first), adopting one another host made, listing them for discovery, removing one."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.api import (
    LABEL_CLAIM,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_TOKEN,
    LABEL_VOLUME,
    Disk,
    DiskSpec,
    Snapshot,
    record_of,
)
from orlop.backends.cloud.attach import Attacher
from orlop.backends.cloud.calls import CloudCalls, recorded_id
from orlop.backends.cloud.fence import LABEL_FENCE, Fence
from orlop.backends.cloud.state import VolumeFiles
from orlop.backends.cloud.waiting import wait_until
from orlop.core.model import BackendError, Conflict, NotFound

log = logging.getLogger(__name__)

ORLOP_LABELS = (
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_VOLUME,
    LABEL_TOKEN,
    LABEL_CLAIM,
    LABEL_FENCE,
)


class Adoption:
    """Create, adopt, list and remove the namespace's disks."""

    def __init__(self, calls: CloudCalls, files: VolumeFiles, attacher: Attacher) -> None:
        self.calls = calls
        self.files = files
        self.attacher = attacher
        self.settings = calls.settings
        self.word = calls.word
        self.last_holders: dict[str, list[str]] = {}  # volume → instances, at the last listing
        self.last_fences: dict[str, Fence] = {}  # volume → its fence, at the last listing

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        existing = self.calls.find(volume.name)
        if len(existing) > 1:
            ids = ", ".join(disk.id for disk in existing)
            raise Conflict(
                f"several {self.word}s carry the name {volume.name} in namespace "
                f"{self.settings.namespace}: {ids}; remove Orlop's labels from all but one"
            )
        if existing:
            self.files.drop_token(volume.name)  # not ours to delete if this create fails
            return self._adopt(volume, existing[0])
        snapshot = None
        if volume.options.get("from_snapshot"):
            snapshot = self.resolve_snapshot(volume.options["from_snapshot"], ours_only=False)
        token = self.files.token(volume.name) or uuid.uuid4().hex
        self.files.keep_token(volume.name, token)  # before the call: see remove()
        labels = {
            LABEL_MANAGED: "orlop",
            LABEL_NAMESPACE: self.settings.namespace,
            LABEL_VOLUME: volume.name,
            LABEL_TOKEN: token,
            # The creating host is the first owner: its first attach needs no label write.
            LABEL_FENCE: Fence(1, self.calls.identity().instance).label(),
        }
        spec = DiskSpec(
            volume.name, self.settings.namespace, labels, token, dict(volume.options), snapshot
        )
        disk = self.calls.create(spec)
        log.info("created %s %s for %s", self.word, disk.id, volume.name)
        ready = wait_until(
            lambda: self._ready(disk.id),
            self.settings.create_timeout,
            f"{self.word} {disk.id} to become ready",
            self.settings.poll_max,
        )
        # The token stays until remove: a crash before the service keeps the record leaves a
        # CREATING row whose cleanup (remove with an empty record) finds the disk by it.
        return record_of(ready)

    def _ready(self, disk_id: str) -> Disk | None:
        disk = self.calls.get(disk_id)
        if disk is not None and disk.state == "error":
            raise BackendError(f"the cloud could not create {self.word} {disk_id} (state error)")
        return disk if disk is not None and disk.state == "ready" else None

    def _adopt(self, volume: VolumeRef, disk: Disk) -> dict[str, Any]:
        actual = self.calls.cloud.options_of(disk)
        for option, value in actual.items():
            asked = volume.options.get(option)
            if asked is not None and asked != value:
                raise Conflict(
                    f"volume {volume.name} already exists as {self.word} {disk.id} with "
                    f"{option}={value} (asked: {asked}); create it with matching options or none"
                )
        log.info("adopted %s %s as %s", self.word, disk.id, volume.name)
        return {**record_of(disk), "adopted": True}

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Every volume of this namespace in the cloud: (name, options, record)."""
        volumes = []
        found = self.calls.find()
        # Who held each disk at this listing: release_if_lost's cheap first look.
        self.last_holders = {
            disk.volume: [a.instance for a in disk.attachments if a.state != "detaching"]
            for disk in found
            if disk.volume
        }
        self.last_fences = {disk.volume: Fence.of(disk) for disk in found if disk.volume}
        for disk in found:
            if disk.volume and disk.state != "deleting":
                options = self.calls.cloud.options_of(disk)
                volumes.append((disk.volume, options, {**record_of(disk), "adopted": True}))
        return volumes

    def remove(self, volume: VolumeRef) -> None:
        disk_id = recorded_id(volume) or self._interrupted_create(volume.name)
        disk = self.calls.get(disk_id) if disk_id else None
        if disk is not None:
            identity = self.calls.identity()
            others = disk.others(identity.instance)
            if others:
                raise Conflict(
                    f"{self.word} {disk.id} ({volume.name}) is attached to "
                    f"{identity.what} {others[0].instance}: unmount it there first"
                )
            self.attacher.detach_disk(disk.id, disk)
            if disk.volume is None:  # another host's Remove kept it: not this host's to delete
                log.info("%s %s was kept (keep_on_remove); not deleted", self.word, disk.id)
            elif volume.options.get("keep_on_remove") == "true":
                self.calls.set_labels("drop labels", disk, dict.fromkeys(ORLOP_LABELS))
                log.info("kept %s %s, dropped Orlop's labels", self.word, disk.id)
            else:
                self.calls.delete(disk)
                log.info("deleted %s %s (%s)", self.word, disk.id, volume.name)
        self.files.drop_token(volume.name)
        self.files.drop_attachment(volume.name)

    def _interrupted_create(self, name: str) -> str | None:
        """The disk a create interrupted before its record was kept, found by its token."""
        token = self.files.token(name)
        if not token:
            return None
        found = self.calls.find(name)
        return next((d.id for d in found if d.labels.get(LABEL_TOKEN) == token), None)

    def resolve_snapshot(self, snapshot: str, ours_only: bool) -> Snapshot:
        """A snapshot by the cloud's ID (any the account can read) or by Orlop name."""
        if self.calls.snapshots().is_snapshot_id(snapshot):
            found = self.calls.get_snapshot(snapshot)
            if found is None:
                raise NotFound(
                    f"snapshot {snapshot} does not exist (or this account cannot read it)"
                )
            if not ours_only or found.name:
                return found
        named = self.calls.find_snapshots(name=snapshot)
        if not named:
            raise NotFound(
                f"no snapshot named {snapshot} in namespace {self.settings.namespace}: "
                "`orlop snapshot ls` lists them"
            )
        if len(named) > 1:
            ids = ", ".join(s.id for s in named)
            raise Conflict(f"several snapshots are named {snapshot} ({ids}): use an ID")
        return named[0]
