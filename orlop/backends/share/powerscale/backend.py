"""Dell PowerScale / Isilon volumes (kind `powerscale`): a directory with a quota, exported
over NFS or SMB, and OneFS snapshots of it.

    drivers:
      orlop-isilon:
        backend: powerscale
        options: {size: 50G, protocol: smb}
        settings: {url: "https://isilon.example.com:8080", username: orlop,
                   password_file: /etc/orlop/isilon-password, ca_file: /etc/orlop/isilon-ca.pem}

The share layer (share/backend.py) over `PowerScaleProvider` (provider.py; a create that
other hosts may race is making.py); the SDK and its session are in client.py, the marks
in quota descriptions in labels.py, snapshots in snapshots.py, the settings in
settings.py, the options in limits.py.
"""

from __future__ import annotations

from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Check, VolumeRef
from orlop.backends.settings import BackendSettings
from orlop.backends.share.backend import ShareBackend, share_capabilities
from orlop.backends.share.mounting import nfs_client_check
from orlop.backends.share.powerscale.limits import OPTIONS
from orlop.backends.share.powerscale.provider import PowerScaleProvider
from orlop.backends.share.powerscale.settings import PowerScaleSettings
from orlop.core.options import OptionSet


class PowerScaleBackend(ShareBackend):
    kind: ClassVar[str] = "powerscale"
    options: ClassVar[OptionSet] = OPTIONS
    settings_model: ClassVar[type[BackendSettings]] = PowerScaleSettings
    capabilities = share_capabilities(snapshot=True)
    provider: PowerScaleProvider

    def __init__(self, context: BackendContext) -> None:
        settings = PowerScaleSettings.parse(self.kind, context.settings)
        super().__init__(context, PowerScaleProvider(context, settings), settings)

    def close(self) -> None:
        """At shutdown: log out of the cluster."""
        self.provider.close()

    # snapshots (Snapshottable): the provider's OneFS snapshots ----------------------------
    def create_snapshot(self, volume: VolumeRef, name: str) -> dict[str, Any]:
        return self.provider.snapshots.create(volume, name)

    def list_snapshots(self, volume: str | None) -> list[dict[str, Any]]:
        return self.provider.snapshots.list(volume)

    def delete_snapshot(self, snapshot: str) -> dict[str, Any]:
        return self.provider.snapshots.delete(snapshot)

    @classmethod
    def host_checks(cls) -> list[Check]:
        return [*super().host_checks(), nfs_client_check()]
