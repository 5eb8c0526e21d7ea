"""Attaching and detaching EBS volumes on this instance, for the EBS provider.

Attach never trusts the API to refuse a double attach. It reads the attachment state itself,
refuses a volume attached to another instance (naming it) unless `preempt=true`, and settles
races between hosts with a claim tag: each contender writes its claim, waits, and reads it
back; only the host whose claim survived calls AttachVolume, and the attachment must then
show this instance. It waits (bounded, with backoff) for EC2 to report the attachment and for
the device to appear here — by serial on Nitro (NVMe), by name on Xen — and detaches again
when the device never appears or any step fails.

What this host attached is kept in small files under the driver's state directory, mirrored
in memory so Status never waits on I/O.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from orlop.backends.base import VolumeRef
from orlop.backends.block import ebs_devices as devices
from orlop.backends.block.ebs_tags import TAG_CLAIM, active_attachments, tag
from orlop.backends.block.ec2 import Ec2Error, wait_until
from orlop.core.model import BackendError, Conflict

if TYPE_CHECKING:
    from orlop.backends.block.ec2 import Ec2, Ec2Settings

log = logging.getLogger(__name__)


class AttachMixin:
    if TYPE_CHECKING:
        settings: Ec2Settings
        _state_dir: str
        _attached: dict[str, dict[str, str]]
        _attach_lock: threading.Lock

        @property
        def ec2(self) -> Ec2: ...

        @property
        def instance_id(self) -> str: ...

        def identity(self) -> tuple[str, str]: ...

        def _describe(self, volume_id: str) -> dict[str, Any] | None: ...

        def _must_describe(self, volume: VolumeRef) -> dict[str, Any]: ...

        @staticmethod
        def _volume_id(volume: VolumeRef) -> str: ...

    # DeviceProvider: attach, detach ------------------------------------------------------
    def attach_device(self, volume: VolumeRef) -> str:
        volume_id, me = self._volume_id(volume), self.instance_id
        found = self._must_describe(volume)
        found = self._settle_detaching(volume, found)
        mine = next((a for a in active_attachments(found) if a["InstanceId"] == me), None)
        if mine is None:
            self._prepare_attach(volume, found)
            with self._attach_lock:
                mine = self._attach(volume, volume_id)
        else:
            mine = self._wait_attached(volume, volume_id)
        return self._wait_device(volume, volume_id, mine["Device"])

    def _settle_detaching(self, volume: VolumeRef, found: dict[str, Any]) -> dict[str, Any]:
        """Wait out detaches in flight (ours after a crash, or another host's unmount)."""
        if not any(a["State"] == "detaching" for a in active_attachments(found)):
            return found

        def settled() -> dict[str, Any] | None:
            now = self._must_describe(volume)
            busy = any(a["State"] == "detaching" for a in active_attachments(now))
            return None if busy else now

        return wait_until(
            settled,
            self.settings.detach_timeout,
            f"EBS volume {found['VolumeId']} to finish detaching",
            self.settings.poll_max,
        )

    def _prepare_attach(self, volume: VolumeRef, found: dict[str, Any]) -> None:
        volume_id, (me, zone) = found["VolumeId"], self.identity()
        if found["AvailabilityZone"] != zone:
            raise Conflict(
                f"EBS volume {volume_id} ({volume.name}) is in {found['AvailabilityZone']} "
                f"and this instance ({me}) in {zone}: EBS attaches only within one zone; "
                "snapshot it and create a volume from the snapshot here"
            )
        others = [a for a in active_attachments(found) if a["InstanceId"] != me]
        if others:
            other = others[0]["InstanceId"]
            if volume.options.get("preempt") != "true":
                raise Conflict(
                    f"volume {volume.name} ({volume_id}) is attached to instance {other}: "
                    "unmount it there, or set preempt=true to force-detach it"
                )
            self._force_detach(volume_id, other)
        self._claim(volume, volume_id)

    def _force_detach(self, volume_id: str, other: str) -> None:
        log.warning("preempting EBS volume %s: force-detaching it from %s", volume_id, other)
        try:
            self.ec2.call("DetachVolume", VolumeId=volume_id, InstanceId=other, Force=True)
        except Ec2Error as error:
            # Examined, not trusted: the state below decides whether the detach happened.
            log.warning("forced detach of %s from %s answered: %s", volume_id, other, error)
        wait_until(
            lambda: self._not_attached_to(volume_id, other),
            self.settings.detach_timeout,
            f"EBS volume {volume_id} to leave instance {other}",
            self.settings.poll_max,
        )

    def _claim(self, volume: VolumeRef, volume_id: str) -> None:
        """Write our claim, wait for other writers to land, read it back: one host wins."""
        mark = f"{self.instance_id} {uuid.uuid4().hex[:12]}"
        self.ec2.call("CreateTags", Resources=[volume_id], Tags=[{"Key": TAG_CLAIM, "Value": mark}])
        time.sleep(self.settings.claim_settle)
        found = self._must_describe(volume)
        claim = tag(found, TAG_CLAIM) or ""
        others = [a["InstanceId"] for a in active_attachments(found)]
        if claim != mark or others:
            winner = others[0] if others else (claim.split()[0] if claim else "another host")
            raise Conflict(
                f"volume {volume.name} ({volume_id}) is being attached by instance {winner} "
                "at the same time; it won: try again once it is unmounted there"
            )

    def _attach(self, volume: VolumeRef, volume_id: str) -> dict[str, Any]:
        me = self.instance_id
        mine_now = self.ec2.call(
            "DescribeVolumes", Filters=[{"Name": "attachment.instance-id", "Values": [me]}]
        )["Volumes"]
        in_use = {a["Device"] for v in mine_now for a in active_attachments(v)}
        device_name = devices.free_device_name(in_use, self.settings.device_root)
        if device_name is None:
            raise BackendError(
                f"instance {me} has no free device name left for EBS volumes "
                f"(/dev/xvd[{devices.DEVICE_LETTERS[0]}-{devices.DEVICE_LETTERS[-1]}] in use)"
            )
        try:
            self.ec2.call("AttachVolume", VolumeId=volume_id, InstanceId=me, Device=device_name)
        except Ec2Error as error:
            self._detach_quietly(volume_id)  # a failed call may still have moved the attachment
            raise BackendError(f"attaching {volume.name} ({volume_id}): {error}") from None
        return self._wait_attached(volume, volume_id)

    def _wait_attached(self, volume: VolumeRef, volume_id: str) -> dict[str, Any]:
        me = self.instance_id

        def attached() -> dict[str, Any] | None:
            found = self._must_describe(volume)
            attachments = active_attachments(found)
            mine = next((a for a in attachments if a["InstanceId"] == me), None)
            if mine is None:
                other = attachments[0]["InstanceId"] if attachments else None
                raise Conflict(
                    f"volume {volume.name} ({volume_id}) went to instance {other} instead"
                    if other
                    else f"the attachment of {volume_id} to {me} vanished"
                )
            return mine if mine["State"] == "attached" else None

        try:
            return wait_until(
                attached,
                self.settings.attach_timeout,
                f"EC2 to attach {volume_id} to {me}",
                self.settings.poll_max,
            )
        except BackendError:
            self._detach_quietly(volume_id)
            raise

    def _wait_device(self, volume: VolumeRef, volume_id: str, device_name: str) -> str:
        s = self.settings
        paths = devices.candidate_paths(volume_id, device_name, s.device_root, s.by_id_dir)
        try:
            device = wait_until(
                lambda: devices.find_device(volume_id, device_name, s.device_root, s.by_id_dir),
                s.attach_timeout,
                f"the device of {volume_id}",
                s.poll_max,
            )
        except BackendError:
            undone = self._detach_quietly(volume_id)
            raise BackendError(
                f"EBS volume {volume_id} ({volume.name}) was attached as {device_name}, but no "
                f"block device appeared within {s.attach_timeout:g}s (looked for "
                f"{', '.join(paths)}); "
                + ("detached it again" if undone else "detaching it again failed too: see the log")
            ) from None
        known = {
            "volume_id": volume_id,
            "instance_id": self.instance_id,
            "device": device_name,
            "path": device,
        }
        self._write(("attached", volume.name), json.dumps(known))
        self._attached[volume.name] = known
        return device

    def detach_device(self, volume: VolumeRef) -> None:
        if volume.record.get("volume_id"):
            self._detach(self._volume_id(volume))
        self._forget_attachment(volume.name)

    def _detach(self, volume_id: str) -> None:
        me = self.instance_id
        found = self._describe(volume_id)
        mine = next((a for a in active_attachments(found or {}) if a["InstanceId"] == me), None)
        if mine is None:
            return
        if mine["State"] != "detaching":
            try:
                self.ec2.call("DetachVolume", VolumeId=volume_id, InstanceId=me)
            except Ec2Error as error:
                if error.code != "IncorrectState":
                    raise
        wait_until(
            lambda: self._not_attached_to(volume_id, me),
            self.settings.detach_timeout,
            f"EBS volume {volume_id} to detach from {me}",
            self.settings.poll_max,
        )
        s = self.settings
        try:  # the kernel drops the device shortly after EC2 reports the detach
            wait_until(
                lambda: (
                    devices.find_device(volume_id, mine["Device"], s.device_root, s.by_id_dir)
                    is None
                    or None
                ),
                min(10.0, s.detach_timeout),
                f"the device of {volume_id} to go",
                s.poll_max,
            )
        except BackendError as error:
            log.warning("%s", error)

    def _detach_quietly(self, volume_id: str) -> bool:
        """Detach after a failed attach; False (logged) if even that failed."""
        try:
            self._detach(volume_id)
        except Exception as error:
            log.error("detaching %s after a failed attach: %s", volume_id, error)
            return False
        return True

    def _not_attached_to(self, volume_id: str, instance: str) -> bool | None:
        found = self._describe(volume_id)
        attachments = active_attachments(found or {})
        return None if any(a["InstanceId"] == instance for a in attachments) else True

    def device_path(self, volume: VolumeRef) -> str | None:
        volume_id = volume.record.get("volume_id")
        if not volume_id:
            return None
        known = self._attached.get(volume.name, {})
        s = self.settings
        return devices.find_device(volume_id, known.get("device"), s.device_root, s.by_id_dir)

    # local state: one small file per volume ------------------------------------------------
    def _file(self, key: tuple[str, str]) -> str:
        return os.path.join(self._state_dir, *key)

    def _write(self, key: tuple[str, str], text: str) -> None:
        path = self._file(key)
        with open(f"{path}.tmp", "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(f"{path}.tmp", path)

    def _read(self, key: tuple[str, str]) -> str | None:
        try:
            with open(self._file(key), encoding="utf-8") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def _forget_attachment(self, name: str) -> None:
        self._attached.pop(name, None)
        self._delete(("attached", name))

    def _delete(self, key: tuple[str, str]) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(key))
