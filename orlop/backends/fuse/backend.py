"""FuseBackend: a network backend = a FUSE client's mounts + the remote side it mounts.

It receives its two parts and delegates to them; every FUSE kind is this class with
other parts:

    attach, detach      = FuseMounts (mounting.py) with the kind's FuseClient
    validate, create,
    remove, describe    = the kind's FuseRemote (make or delete the remote directory,
                          bucket or prefix; what Status shows)
    usage               = a walk of the live mount, else what the remote can say

    class SshfsBackend(FuseBackend):   # sshfs.py: its kind, options, settings, parts
        def __init__(self, context):
            ...
            super().__init__(context, FuseMounts(paths, client), SshfsRemote(...))

FUSE volumes are `global` (every host sees the same remote data): no attach elsewhere to
undo, no resize, no quota.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from orlop.backends.base import BackendContext, Capabilities, VolumeRef
from orlop.backends.fuse.mounting import FuseMounts
from orlop.backends.settings import BackendSettings
from orlop.core.model import Usage
from orlop.core.options import OptionSet

# What every FUSE kind can do: decided here, once.
FUSE_CAPABILITIES = Capabilities(scope="global")


class FuseRemote(Protocol):
    """The remote side of a FUSE kind: what Create makes and Remove deletes."""

    def validate(self, name: str, options: dict[str, str]) -> None:
        """Reject combinations of (canonical) options that cannot work."""

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        """Make (or find) the remote side; prove it is reachable; return the record."""

    def remove(self, volume: VolumeRef) -> None:
        """Delete the remote side if the volume's options say so (after its unmount)."""

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        """Facts for Status, from options and record: no I/O, no secret."""

    def usage(self, volume: VolumeRef) -> Usage | None:
        """What the remote says the volume holds while it is not mounted here, if it can."""


class FuseBackend:
    kind: ClassVar[str]
    options: ClassVar[OptionSet]
    settings_model: ClassVar[type[BackendSettings]]
    capabilities = FUSE_CAPABILITIES

    def __init__(self, context: BackendContext, mounts: FuseMounts, remote: FuseRemote) -> None:
        self.context = context
        self.mounts = mounts
        self.client = mounts.client
        self.remote = remote
        self.paths = mounts.paths

    # Backend protocol -------------------------------------------------------------------
    def validate(self, name: str, options: dict[str, str]) -> None:
        self.remote.validate(name, options)

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        return self.remote.create(volume)

    def remove(self, volume: VolumeRef) -> None:
        self.mounts.detach(volume)
        self.mounts.forget(volume)
        self.remote.remove(volume)

    def mountpoint(self, volume: VolumeRef) -> str:
        return self.mounts.mountpoint(volume)

    def attach(self, volume: VolumeRef) -> str:
        return self.mounts.attach(volume)

    def detach(self, volume: VolumeRef) -> None:
        self.mounts.detach(volume)

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        return self.mounts.is_attached(volume, mounted)

    def usage(self, volume: VolumeRef) -> Usage | None:
        if self.mounts.alive(volume):
            return self.mounts.walked_usage(volume)  # counts files still waiting for upload
        return self.remote.usage(volume)

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        return self.remote.describe(volume)
