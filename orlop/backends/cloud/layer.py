"""CloudDisks: the block layer's DeviceProvider over any CloudProvider — the story every
cloud disk shares, told once.

    create   find the volume's disk by its labels (another host made it: adopt it) or create
             one with an idempotency token kept on disk first; wait until it is ready
    attach   / detach: `attach.Attacher` (preemption, race guard, device discovery)
    grow     resize (grow only), wait for the cloud and the device to show the new size
    remove   refuse while attached elsewhere; detach from here; delete, or keep the disk and
             drop Orlop's labels (keep_on_remove)

The cloud — its labels — is the source of truth for which volumes exist; this host keeps
only what it attached and the token of a create in flight (`state.VolumeFiles`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef, tool_check
from orlop.backends.cloud import devices
from orlop.backends.cloud.api import (
    LABEL_CLAIM,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_TOKEN,
    LABEL_VOLUME,
    CloudProvider,
    CloudSettings,
    Disk,
    DiskSpec,
    Identity,
    Snapshot,
    record_of,
)
from orlop.backends.cloud.attach import Attacher
from orlop.backends.cloud.state import VolumeFiles
from orlop.backends.cloud.waiting import call_with_retries, wait_until
from orlop.core.model import BackendError, Conflict, InvalidOption
from orlop.core.options import Option, OptionSet, canonical_bool

log = logging.getLogger(__name__)

# Options every cloud volume has. They say how this host mounts it, not what the disk is:
# `identity=False`, so a second host may ask for preempt=true on a volume it discovered.
LAYER_OPTIONS = (
    Option(
        "preempt",
        canonical_bool,
        "on mount, detach the disk from another instance that holds it",
        identity=False,
    ),
    Option(
        "keep_on_remove",
        canonical_bool,
        "on remove, keep the disk and drop Orlop's labels",
        identity=False,
    ),
)
ORLOP_LABELS = (LABEL_MANAGED, LABEL_NAMESPACE, LABEL_VOLUME, LABEL_TOKEN, LABEL_CLAIM)


class CloudDisks:
    """A DeviceProvider over `cloud_class`; `CloudBackend` makes one subclass per cloud."""

    cloud_class: ClassVar[type[CloudProvider]]
    kind: ClassVar[str]
    options: ClassVar[OptionSet]
    settings_model: ClassVar[type[CloudSettings]]
    capabilities: Capabilities = Capabilities(scope="global", exclusive_attach=True)

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.settings: CloudSettings = self.settings_model.parse(self.kind, context.settings)
        self.cloud: CloudProvider = self.cloud_class(self.settings, context.path(self.kind))
        self.files = VolumeFiles(context.path("cloud"))
        self.word = self.cloud_class.disk_word
        self._identity: Identity | None = None
        self._identity_lock = threading.Lock()
        self.attacher = Attacher(self)
        self.last_holders: dict[str, list[str]] = {}  # volume → instances, at the last listing

    # calls and identity ------------------------------------------------------------------
    def api(self, what: str, function: Any, *args: Any, repeatable: bool = False) -> Any:
        """One provider call with the layer's retry rules."""
        return call_with_retries(self.settings, what, lambda: function(*args), repeatable)

    def identity(self) -> Identity:
        with self._identity_lock:
            if self._identity is None:
                self._identity = self.api("identity", self.cloud.identity, repeatable=True)
            return self._identity

    def get(self, disk_id: str) -> Disk | None:
        disk: Disk | None = self.api("get disk", self.cloud.get_disk, disk_id, repeatable=True)
        return disk

    def find(self, volume: str | None = None) -> list[Disk]:
        found: list[Disk] = self.api(
            "find disks", self.cloud.find_disks, self.settings.namespace, volume, repeatable=True
        )
        return found

    def must_get(self, volume: VolumeRef) -> Disk:
        disk_id = self.disk_id(volume)
        disk = self.get(disk_id)
        if disk is None:
            raise BackendError(
                f"{self.word} {disk_id} of volume {volume.name} no longer exists in the cloud; "
                "remove the volume from Orlop"
            )
        return disk

    @staticmethod
    def recorded_id(volume: VolumeRef) -> str | None:
        """The disk ID in the volume's record, if it has one ("volume_id": EBS records
        written before the cloud-disk layer)."""
        found = volume.record.get("disk_id") or volume.record.get("volume_id")
        return str(found) if found else None

    def disk_id(self, volume: VolumeRef) -> str:
        disk_id = self.recorded_id(volume)
        if not disk_id:
            raise BackendError(f"volume {volume.name} has no {self.word} ID in its record")
        return disk_id

    # DeviceProvider: validate, create, remove ----------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        self.cloud.validate(options)

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        existing = self.find(volume.name)
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
        }
        spec = DiskSpec(
            volume.name, self.settings.namespace, labels, token, dict(volume.options), snapshot
        )
        disk: Disk = self.api("create disk", self.cloud.create_disk, spec, self.identity())
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
        disk = self.get(disk_id)
        if disk is not None and disk.state == "error":
            raise BackendError(f"the cloud could not create {self.word} {disk_id} (state error)")
        return disk if disk is not None and disk.state == "ready" else None

    def _adopt(self, volume: VolumeRef, disk: Disk) -> dict[str, Any]:
        actual = self.cloud.options_of(disk)
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
        found = self.find()
        # Who held each disk at this listing: release_if_lost's cheap first look.
        self.last_holders = {
            disk.volume: [a.instance for a in disk.attachments if a.state != "detaching"]
            for disk in found
            if disk.volume
        }
        for disk in found:
            if disk.volume and disk.state != "deleting":
                options = self.cloud.options_of(disk)
                volumes.append((disk.volume, options, {**record_of(disk), "adopted": True}))
        return volumes

    def remove(self, volume: VolumeRef) -> None:
        disk_id = self.recorded_id(volume) or self._interrupted_create(volume.name)
        disk = self.get(disk_id) if disk_id else None
        if disk is not None:
            me = self.identity().instance
            others = disk.others(me)
            if others:
                raise Conflict(
                    f"{self.word} {disk.id} ({volume.name}) is attached to "
                    f"{self.identity().what} {others[0].instance}: unmount it there first"
                )
            self.attacher.detach_disk(disk.id, disk)
            if disk.volume is None:  # another host's Remove kept it: not this host's to delete
                log.info("%s %s was kept (keep_on_remove); not deleted", self.word, disk.id)
            elif volume.options.get("keep_on_remove") == "true":
                labels: dict[str, str | None] = dict.fromkeys(ORLOP_LABELS)
                self.api("drop labels", self.cloud.set_labels, disk, labels, repeatable=True)
                log.info("kept %s %s, dropped Orlop's labels", self.word, disk.id)
            else:
                self.api("delete disk", self.cloud.delete_disk, disk)
                log.info("deleted %s %s (%s)", self.word, disk.id, volume.name)
        self.files.drop_token(volume.name)
        self.files.drop_attachment(volume.name)

    def _interrupted_create(self, name: str) -> str | None:
        """The disk a create interrupted before its record was kept, found by its token."""
        token = self.files.token(name)
        if not token:
            return None
        return next((d.id for d in self.find(name) if d.labels.get(LABEL_TOKEN) == token), None)

    def holder_elsewhere(self, volume: VolumeRef) -> str | None:
        """None if the cloud shows the volume's disk attached to this instance (one read);
        else who has it instead, for a message: "instance i-…", "no instance", "nobody (the
        disk no longer exists)"."""
        disk = self.get(self.disk_id(volume))
        if disk is None:
            return "nobody (the disk no longer exists)"
        me = self.identity()
        mine = disk.attached_to(me.instance)
        if mine is not None and mine.state != "detaching":
            return None
        others = disk.others(me.instance)
        return f"{me.what} {others[0].instance}" if others else f"no {me.what}"

    # DeviceProvider: attach, detach, device_path (the story is in attach.py) ----------------
    def attach_device(self, volume: VolumeRef) -> str:
        return self.attacher.attach(volume)

    def detach_device(self, volume: VolumeRef) -> None:
        self.attacher.detach(volume)

    def device_path(self, volume: VolumeRef) -> str | None:
        return self.attacher.device_path(volume)

    # DeviceProvider: grow, describe, doctor -------------------------------------------------
    def grow(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        disk = self.must_get(volume)
        if size < disk.size:
            raise InvalidOption(
                f"{self.word}s cannot shrink: {volume.name} is {disk.size} bytes, asked {size}"
            )
        if size > disk.size:
            self.api("resize", self.cloud.resize_disk, disk, size)
            disk = wait_until(
                lambda: self._grown(disk.id, size),
                self.settings.create_timeout,
                f"{self.word} {disk.id} to grow",
                self.settings.poll_max,
            )
        device = self.device_path(volume)
        if device is not None:
            wait_until(
                lambda: devices.device_bytes(device) >= disk.size or None,
                self.settings.attach_timeout,
                f"{device} to show its new size",
                self.settings.poll_max,
            )
        return {**volume.record, **record_of(disk)}

    def _grown(self, disk_id: str, size: int) -> Disk | None:
        disk = self.get(disk_id)
        return disk if disk is not None and disk.size >= size else None

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        facts = dict(self.cloud.describe(volume.record))
        known = self.files.attachment(volume.name)
        facts["attachment"] = (
            {key: known.get(key) for key in ("instance", "device_name", "path")} if known else None
        )
        return facts

    @classmethod
    def host_checks(cls) -> list[Check]:
        # fsfreeze: snapshots of mounted volumes hold a clean filesystem.
        return [*cls.cloud_class.host_checks(), tool_check("fsfreeze", "util-linux")]

    # snapshots: resolution for from_snapshot (the rest is CloudBackend's) -------------------
    def resolve_snapshot(self, snapshot: str, ours_only: bool) -> Snapshot:
        """A snapshot by the cloud's ID (any the account can read) or by Orlop name."""
        from orlop.backends.cloud.api import CloudSnapshots
        from orlop.core.model import NotFound

        cloud = self.cloud
        if not isinstance(cloud, CloudSnapshots):
            raise InvalidOption(f"driver kind {self.kind} has no snapshots")
        if cloud.is_snapshot_id(snapshot):
            found = self.api("get snapshot", cloud.get_snapshot, snapshot, repeatable=True)
            if found is None:
                raise NotFound(
                    f"snapshot {snapshot} does not exist (or this account cannot read it)"
                )
            if not ours_only or found.name:
                return found  # type: ignore[no-any-return]
        named: list[Snapshot] = self.api(
            "find snapshots",
            cloud.find_snapshots,
            self.settings.namespace,
            None,
            snapshot,
            repeatable=True,
        )
        if not named:
            raise NotFound(
                f"no snapshot named {snapshot} in namespace {self.settings.namespace}: "
                "`orlop snapshot ls` lists them"
            )
        if len(named) > 1:
            ids = ", ".join(s.id for s in named)
            raise Conflict(f"several snapshots are named {snapshot} ({ids}): use an ID")
        return named[0]
