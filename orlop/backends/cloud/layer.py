"""CloudDisks: the block layer's DeviceProvider over any CloudProvider — the story every
cloud disk shares, told once.

    calls    every provider call, retried and typed: `calls.CloudCalls`
    create   / adopt / list / remove: `adopt.Adoption` (the volume's disk by its labels, or a
             new one with an idempotency token kept on disk first)
    attach   / detach: `attach.Attacher` (preemption, race guard, device discovery)
    grow     resize (grow only), wait for the cloud and the device to show the new size
    spec     what a backend kind over a cloud is (kind, options, settings, capabilities),
             decided once: `disks_spec(cloud_class)`

Snapshots are the backend's helper `snapshots.DiskSnapshots`, over the same calls.

The cloud — its labels — is the source of truth for which volumes exist; this host keeps
only what it attached and the token of a create in flight (`state.VolumeFiles`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef
from orlop.backends.block.provider import DeviceProvider, ProviderSpec
from orlop.backends.cloud.adopt import ORLOP_LABELS, Adoption
from orlop.backends.cloud.api import (
    CloudProvider,
    CloudSettings,
    Disk,
    Identity,
    Snapshot,
    record_of,
)
from orlop.backends.cloud.attach import Attacher
from orlop.backends.cloud.calls import CloudCalls, recorded_id
from orlop.backends.cloud.fence import stale_against
from orlop.backends.cloud.state import VolumeFiles
from orlop.backends.cloud.waiting import wait_until
from orlop.core.model import InvalidOption
from orlop.core.options import Option, OptionSet, canonical_bool
from orlop.host.blockdevices import BlockDevices, HostBlockDevices

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
__all__ = ["LAYER_OPTIONS", "ORLOP_LABELS", "CloudDisks", "disks_spec"]


def disks_spec(cloud_class: type[CloudProvider]) -> ProviderSpec:
    """What `CloudDisks` over `cloud_class` makes of a backend kind, decided here once: the
    cloud's kind, options (and the layer's), settings model; global, attached to one host at
    a time, snapshots where the provider has them."""
    snapshots = all(hasattr(cloud_class, m) for m in ("create_snapshot", "find_snapshots"))
    return ProviderSpec(
        kind=cloud_class.kind,
        options=OptionSet([*cloud_class.options.options.values(), *LAYER_OPTIONS]),
        settings_model=cloud_class.settings_model,
        capabilities=Capabilities(scope="global", exclusive_attach=True, snapshot=snapshots),
        make=_maker(cloud_class),
        host_checks=cloud_class.host_checks,
    )


class CloudDisks:
    """A DeviceProvider over the cloud `cloud_class` (handed in: `CloudBackend` names it).
    It wires the collaborators: `CloudCalls` (provider calls), `Adoption` (create, adopt,
    list, remove), `Attacher` (attach, detach); `devices` is the host's block devices."""

    def __init__(
        self,
        context: BackendContext,
        cloud_class: type[CloudProvider],
        devices: BlockDevices | None = None,
        cloud: CloudProvider | None = None,
    ) -> None:
        """`devices` and `cloud`: the host's block devices and the provider, for tests to
        hand in (by default the real ones, the provider made from the settings)."""
        spec = disks_spec(cloud_class)
        self.cloud_class = cloud_class
        self.kind: str = spec.kind
        self.options: OptionSet = spec.options
        self.settings_model: type[CloudSettings] = cloud_class.settings_model
        self.capabilities: Capabilities = spec.capabilities
        self.context = context
        self.settings: CloudSettings = self.settings_model.parse(self.kind, context.settings)
        self.cloud: CloudProvider = (
            cloud if cloud is not None else cloud_class(self.settings, context.path(self.kind))
        )
        self.files = VolumeFiles(context.path("cloud"))
        self.word = cloud_class.disk_word
        self.devices: BlockDevices = devices if devices is not None else HostBlockDevices()
        self.calls = CloudCalls(self.cloud, self.settings, context.driver)
        self.attacher = Attacher(self.calls, self.files, self.settings, self.devices)
        self.adoption = Adoption(self.calls, self.files, self.attacher)

    # calls and identity ------------------------------------------------------------------
    def identity(self) -> Identity:
        return self.calls.identity()

    def get(self, disk_id: str) -> Disk | None:
        return self.calls.get(disk_id)

    def find(self, volume: str | None = None) -> list[Disk]:
        return self.calls.find(volume)

    def must_get(self, volume: VolumeRef) -> Disk:
        return self.calls.must_get(volume)

    @staticmethod
    def recorded_id(volume: VolumeRef) -> str | None:
        return recorded_id(volume)

    def disk_id(self, volume: VolumeRef) -> str:
        return self.calls.disk_id(volume)

    @property
    def last_holders(self) -> dict[str, list[str]]:
        """Volume → instances holding its disk, at the last discovery listing."""
        return self.adoption.last_holders

    def stale_at_listing(self, volume: VolumeRef) -> bool:
        """Whether the last discovery listing showed the volume's fence taken over since this
        host attached it (no further read)."""
        fence = self.adoption.last_fences.get(volume.name)
        if fence is None:
            return False
        disk_id = self.recorded_id(volume) or ""
        _, local = self.attacher.fencing.local_generation(volume.name, disk_id)
        return stale_against(fence, self.identity().instance, local) is not None

    # DeviceProvider: validate, create, remove (the story is in adopt.py) ---------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        self.cloud.validate(options)

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        return self.adoption.create(volume)

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        return self.adoption.list_volumes()

    def remove(self, volume: VolumeRef) -> None:
        self.adoption.remove(volume)

    def holder_elsewhere(self, volume: VolumeRef) -> str | None:
        """None if the cloud shows the volume's disk attached to this instance and its fence
        does not say another took it over (one read); else who has it instead, for a message:
        "instance i-…", "instance i-… (fence generation 3)", "no instance", "nobody (the
        disk no longer exists)"."""
        disk = self.get(self.disk_id(volume))
        if disk is None:
            return "nobody (the disk no longer exists)"
        me = self.identity()
        mine = disk.attached_to(me.instance)
        stale = self.attacher.fencing.stale(volume.name, disk, me)
        if mine is not None and mine.state != "detaching":
            return None if stale is None else stale.holder(me.what)
        others = disk.others(me.instance)
        if others:
            return f"{me.what} {others[0].instance}"
        return stale.holder(me.what) if stale is not None else f"no {me.what}"

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
            self.calls.resize(disk, size)
            disk = wait_until(
                lambda: self._grown(disk.id, size),
                self.settings.create_timeout,
                f"{self.word} {disk.id} to grow",
                self.settings.poll_max,
            )
        device = self.device_path(volume)
        if device is not None:
            wait_until(
                lambda: self.devices.size(device) >= disk.size or None,
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

    def host_checks(self) -> list[Check]:
        return disks_spec(self.cloud_class).host_checks()

    # snapshots: resolution for from_snapshot (the rest is CloudBackend's) -------------------
    def resolve_snapshot(self, snapshot: str, ours_only: bool) -> Snapshot:
        """A snapshot by the cloud's ID (any the account can read) or by Orlop name."""
        return self.adoption.resolve_snapshot(snapshot, ours_only)


def _maker(cloud_class: type[CloudProvider]) -> Callable[..., DeviceProvider]:
    def make(
        context: BackendContext,
        devices: BlockDevices | None = None,
        cloud: CloudProvider | None = None,
    ) -> CloudDisks:
        return CloudDisks(context, cloud_class, devices, cloud)

    return make
