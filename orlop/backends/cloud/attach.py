"""Attaching a cloud disk to this machine and detaching it, the same way for every cloud.

    attach   wait out a detach in flight; refuse a disk held by another instance, naming it
             (HeldElsewhere: a caller may wait for the holder to let go), unless
             preempt=true (force-detach it there first); the race guard (claim, settle,
             read back) only where the cloud does not refuse a second attachment itself;
             attach under a name this host picks; wait for the attachment and for the
             device to appear here (by the provider's by-id paths); detach again if any
             step after the attach call fails; fenced (`fence.py`): a preempt bumps the
             disk's generation first, an attach records owner and generation, and a host
             whose kept generation is stale is refused
    detach   detach from this instance, wait for the cloud and for the device to go

What this host attached is kept in `state.VolumeFiles` (fsynced), so Status and device
lookups never wait on the cloud.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.api import (
    LABEL_CLAIM,
    Attachment,
    CloudError,
    CloudSettings,
    Disk,
    ErrorKind,
    Identity,
)
from orlop.backends.cloud.calls import CloudCalls, recorded_id
from orlop.backends.cloud.fence import Fencing
from orlop.backends.cloud.state import VolumeFiles
from orlop.backends.cloud.waiting import wait_until
from orlop.core.model import BackendError, Conflict, HeldElsewhere
from orlop.host.blockdevices import BlockDevices
from orlop.ops.counters import volume_preempted

log = logging.getLogger(__name__)


class Attacher:
    """The attach and detach sequencing of one cloud driver: the provider's calls, this
    host's attachment files and its block devices are given, so tests can hand in fakes."""

    def __init__(
        self,
        calls: CloudCalls,
        files: VolumeFiles,
        settings: CloudSettings,
        devices: BlockDevices,
    ) -> None:
        self.calls = calls
        self.files = files
        self.settings = settings
        self.devices = devices
        self.word = calls.word
        self.fencing = Fencing(calls, files)
        self._attach_lock = threading.Lock()  # device names are per instance: one pick at a time

    def attach(self, volume: VolumeRef) -> str:
        identity = self.calls.identity()
        disk = self._settle_detaching(volume, self.calls.must_get(volume))
        self.fencing.check(volume, disk, identity)  # taken over since this host attached it?
        mine = disk.attached_to(identity.instance)
        if mine is None:
            self._prepare_attach(volume, disk, identity)
            with self._attach_lock:
                device_name = self.calls.device_name(disk, identity)
                self._attach(volume, disk, identity, device_name)
        disk, mine = self._wait_attached(volume, disk.id)
        try:
            generation = self.fencing.hold(disk, identity)
        except BackendError:
            self._detach_quietly(disk.id)  # not holding it under a fence: give it back
            raise
        return self._wait_device(volume, disk, mine, generation)

    def _settle_detaching(self, volume: VolumeRef, disk: Disk) -> Disk:
        """Wait out detaches in flight (ours after a crash, or another host's unmount)."""
        if not any(a.state == "detaching" for a in disk.attachments):
            return disk

        def settled() -> Disk | None:
            now = self.calls.must_get(volume)
            return None if any(a.state == "detaching" for a in now.attachments) else now

        return wait_until(
            settled,
            self.settings.detach_timeout,
            f"{self.word} {disk.id} to finish detaching",
            self.settings.poll_max,
        )

    def _prepare_attach(self, volume: VolumeRef, disk: Disk, identity: Identity) -> None:
        if disk.zone and identity.zone and disk.zone != identity.zone:
            raise Conflict(
                f"{self.word} {disk.id} ({volume.name}) is in {disk.zone} and this "
                f"{identity.what} ({identity.instance}) in {identity.zone}: a disk attaches "
                "only within its zone; snapshot it and create a volume from the snapshot here"
            )
        preempted = False
        for other in disk.others(identity.instance):
            if volume.repair:  # recovery after a restart: never take it back from a new holder
                raise Conflict(
                    f"volume {volume.name} ({self.word} {disk.id}) is attached to "
                    f"{identity.what} {other.instance} now: not taking it back after a restart"
                )
            if volume.options.get("preempt") != "true":
                raise HeldElsewhere(
                    f"volume {volume.name} ({self.word} {disk.id}) is attached to "
                    f"{identity.what} {other.instance}: unmount it there, or create it here "
                    "with preempt=true to detach it from there",
                    other.instance,
                )
            if not preempted:
                self.fencing.bump(disk, identity)  # first: the old holder sees it is stale
                preempted = True
            self._force_detach(disk, other.instance)
            volume_preempted(volume.name, other.instance)  # an event: taken from there
        if not self.calls.refuses_second_attach:
            self._claim(volume, disk, identity)

    def _force_detach(self, disk: Disk, other: str) -> None:
        log.warning("preempting %s %s: detaching it from %s", self.word, disk.id, other)
        try:
            self.calls.detach("force detach", disk, other, True)
        except CloudError as error:
            # Examined, not trusted: the state below decides whether the detach happened.
            log.warning("forced detach of %s from %s answered: %s", disk.id, other, error)
        wait_until(
            lambda: self._not_attached_to(disk.id, other),
            self.settings.detach_timeout,
            f"{self.word} {disk.id} to leave {other}",
            self.settings.poll_max,
        )

    def _claim(self, volume: VolumeRef, disk: Disk, identity: Identity) -> None:
        """The race guard for clouds that accept a second attachment: write our claim, wait for
        other writers to land, read it back; only the host whose claim survived attaches."""
        mark = f"{identity.instance} {uuid.uuid4().hex[:12]}"
        self.calls.set_labels("claim", disk, {LABEL_CLAIM: mark})
        time.sleep(self.settings.claim_settle)
        now = self.calls.must_get(volume)
        claim = now.labels.get(LABEL_CLAIM) or ""
        holders = [a.instance for a in now.attachments]
        if claim != mark or holders:
            winner = holders[0] if holders else (claim.split()[0] if claim else "another host")
            raise HeldElsewhere(
                f"volume {volume.name} ({self.word} {disk.id}) is being attached by "
                f"{identity.what} {winner} at the same time; it won: try again once it is "
                "unmounted there",
                winner,
            )

    def _attach(
        self, volume: VolumeRef, disk: Disk, identity: Identity, device_name: str | None
    ) -> None:
        try:
            self.calls.attach(disk, identity, device_name)
        except CloudError as error:
            if error.kind is ErrorKind.IN_USE:
                holder = error.holder or self._holder(disk.id, identity.instance)
                raise HeldElsewhere(
                    f"volume {volume.name} ({self.word} {disk.id}) is attached to "
                    f"{identity.what} {holder or 'another instance'}: the cloud refused a "
                    "second attachment; unmount it there, or use preempt=true",
                    holder or "",
                ) from None
            self._detach_quietly(disk.id)  # a failed call may still have attached it
            raise BackendError(f"attaching {volume.name} ({disk.id}): {error}") from None

    def _holder(self, disk_id: str, me: str) -> str | None:
        disk = self.calls.get(disk_id)
        others = disk.others(me) if disk is not None else []
        return others[0].instance if others else None

    def _wait_attached(self, volume: VolumeRef, disk_id: str) -> tuple[Disk, Attachment]:
        me = self.calls.identity()

        def attached() -> tuple[Disk, Attachment] | None:
            disk = self.calls.must_get(volume)
            mine = disk.attached_to(me.instance)
            if mine is None:
                others = disk.others(me.instance)
                raise Conflict(
                    f"volume {volume.name} ({disk_id}) went to {me.what} {others[0].instance}"
                    if others
                    else f"the attachment of {disk_id} to {me.instance} vanished"
                )
            return (disk, mine) if mine.state == "attached" else None

        try:
            return wait_until(
                attached,
                self.settings.attach_timeout,
                f"the cloud to attach {disk_id} to {me.instance}",
                self.settings.poll_max,
            )
        except BackendError:
            self._detach_quietly(disk_id)
            raise

    def _wait_device(self, volume: VolumeRef, disk: Disk, mine: Attachment, generation: int) -> str:
        disk_id = disk.id
        paths = self.calls.cloud.device_paths(disk, mine)
        timeout = self.settings.attach_timeout
        try:
            device = wait_until(
                lambda: self.devices.find(paths),
                timeout,
                f"the device of {disk_id}",
                self.settings.poll_max,
            )
        except BackendError:
            undone = self._detach_quietly(disk_id)
            raise BackendError(
                f"{self.word} {disk_id} ({volume.name}) was attached, but no block device "
                f"appeared within {timeout:g}s (looked for {', '.join(paths)}); "
                + ("detached it again" if undone else "detaching it again failed too: see the log")
            ) from None
        self.files.keep_attachment(
            volume.name,
            {
                "disk_id": disk_id,
                "instance": mine.instance,
                "device_name": mine.device_name,
                "path": device,
                "paths": paths,
                "generation": generation,  # the fence this host holds it under (fence.py)
            },
        )
        return device

    def detach(self, volume: VolumeRef) -> None:
        disk_id = recorded_id(volume)
        if disk_id:
            self.detach_disk(disk_id)
        self.files.drop_attachment(volume.name)

    def detach_disk(self, disk_id: str, known: Disk | None = None) -> None:
        """Detach from this instance; `known`: the disk as just read, to spare a call."""
        me = self.calls.identity().instance
        disk = known if known is not None else self.calls.get(disk_id)
        mine = disk.attached_to(me) if disk is not None else None
        if disk is None or mine is None:
            return
        paths = self.calls.cloud.device_paths(disk, mine)
        if mine.state != "detaching":
            try:
                self.calls.detach("detach", disk, me, False)
            except CloudError as error:
                if error.kind is not ErrorKind.NOT_FOUND:
                    raise
        wait_until(
            lambda: self._not_attached_to(disk_id, me),
            self.settings.detach_timeout,
            f"{self.word} {disk_id} to detach from {me}",
            self.settings.poll_max,
        )
        try:  # the kernel drops the device shortly after the cloud reports the detach
            wait_until(
                lambda: self.devices.find(paths) is None or None,
                min(10.0, self.settings.detach_timeout),
                f"the device of {disk_id} to go",
                self.settings.poll_max,
            )
        except BackendError as error:
            log.warning("%s", error)

    def _detach_quietly(self, disk_id: str) -> bool:
        """Detach after a failed attach; False (logged) if even that failed."""
        try:
            self.detach_disk(disk_id)
        except BackendError as error:  # CloudError included; a bug is not swallowed
            log.error("detaching %s after a failed attach: %s", disk_id, error)
            return False
        return True

    def _not_attached_to(self, disk_id: str, instance: str) -> bool | None:
        disk = self.calls.get(disk_id)
        return None if disk is not None and disk.attached_to(instance) else True

    def device_path(self, volume: VolumeRef) -> str | None:
        known = self.files.attachment(volume.name)
        if not known or known.get("disk_id") != recorded_id(volume):
            return None
        return self.devices.find(known.get("paths") or [known.get("path", "")])
