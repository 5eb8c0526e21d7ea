"""ShareBackend: a file-share backend = a share provider + the share layer's mounts.

It receives its provider (a ShareProvider: Azure Files, PowerScale) and delegates to it
and to `ShareMounts` (mounting.py), the same for every provider:

    validate, create, remove, resize, describe, discovery   = the provider
    attach, detach, is_attached                             = ShareMounts, at the
                                                              provider's `target`
    create                                                  = provider.create, which
                                                              proves the share with a
                                                              mount (ShareMounts.prove)
    usage                                                   = the provider's quota, or
                                                              a walk of the live mount

    class AzureFileBackend(ShareBackend):   # azurefile/backend.py: kind, options, …
        def __init__(self, context):
            settings = AzureFileSettings.parse(self.kind, context.settings)
            super().__init__(context, AzureFileProvider(context, settings), settings)

Shares are `global`: many hosts mount one at once, with no attach, preemption or format.
"""

from __future__ import annotations

from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef, tool_check
from orlop.backends.fuse.mounting import FusePaths, fuse_device_check
from orlop.backends.settings import BackendSettings
from orlop.backends.share.mounting import ShareMounts, smb_client_check
from orlop.backends.share.provider import ShareProvider, ShareSettings
from orlop.core.model import Usage
from orlop.core.options import OptionSet


def share_capabilities(*, snapshot: bool = False) -> Capabilities:
    """What a share kind can do, decided here once: a quota that can grow, seen by every
    host; point-in-time copies where the storage system makes them."""
    return Capabilities(scope="global", resize=True, quota=True, snapshot=snapshot)


class ShareBackend:
    kind: ClassVar[str]
    options: ClassVar[OptionSet]
    settings_model: ClassVar[type[BackendSettings]]
    capabilities = share_capabilities()

    def __init__(
        self, context: BackendContext, provider: ShareProvider, settings: ShareSettings
    ) -> None:
        self.context = context
        self.provider = provider
        self.paths = FusePaths.make(context)
        self.mounts = ShareMounts(self.paths, context.path("clients"), provider, settings.client)

    # Backend protocol -------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        self.provider.validate(name, options)

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        return self.provider.create(volume, self.mounts.prove)

    def remove(self, volume: VolumeRef) -> None:
        self.mounts.remove_local(volume)
        self.provider.remove(volume)

    def mountpoint(self, volume: VolumeRef) -> str:
        return self.mounts.mountpoint(volume)

    def attach(self, volume: VolumeRef) -> str:
        return self.mounts.attach(volume)

    def detach(self, volume: VolumeRef) -> None:
        self.mounts.detach(volume)

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        return self.mounts.is_attached(volume, mounted)

    def usage(self, volume: VolumeRef) -> Usage | None:
        return self.provider.usage(volume, self.mounts.walked_usage)

    def resize(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        return self.provider.resize(volume, size)

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        return self.provider.describe(volume)

    # discovery: volumes other hosts made --------------------------------------------------
    @property
    def discover_interval(self) -> float:
        return self.provider.discover_interval

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        return self.provider.list_volumes()

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [smb_client_check(), tool_check("smbnetfs", "smbnetfs"), fuse_device_check()]
