"""The ShareProvider protocol: what a storage system's API does for the share layer.

A provider (Azure Files, PowerScale) makes and deletes a share with a quota, says where
it is (`target`: an SMB share with credentials, or an NFS export) and what it holds; the
share layer (backend.py, mounting.py) mounts it, the same for every provider. Here too:
the settings and options every share driver has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from orlop.backends.base import VolumeRef
from orlop.backends.settings import BackendSettings
from orlop.backends.share import clients
from orlop.backends.share.clients import NfsTarget, SmbTarget
from orlop.core.model import Usage
from orlop.core.options import Option, canonical_bool, canonical_int, canonical_mode, one_of
from orlop.core.options import parse_id as _parse_id

Target = SmbTarget | NfsTarget
Prove = Callable[[VolumeRef], None]  # mount once and unmount: raises why it cannot work
Walk = Callable[[VolumeRef], Usage | None]  # what the live mount holds, walked


class ShareProvider(Protocol):
    discover_interval: float  # seconds between listings of volumes other hosts made

    def validate(self, name: str, options: dict[str, str]) -> None:
        """Reject combinations of (canonical) options the provider cannot honour."""

    def create(self, volume: VolumeRef, prove: Prove) -> dict[str, Any]:
        """Make or find the share; `prove` it with its record before answering; undo what
        this call made if that fails. Returns the record."""

    def remove(self, volume: VolumeRef) -> None:
        """Delete (or keep, as options say) the share; called once it is unmounted here."""

    def target(self, volume: VolumeRef) -> Target:
        """Where the volume's data is and how to log in; from options and record, no I/O."""

    def usage(self, volume: VolumeRef, walk: Walk) -> Usage | None:
        """Size, used and free from the quota; `walk` where the provider cannot tell."""

    def resize(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        """Raise the quota to `size` bytes (never lower it); returns the record."""

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        """Facts for Status, from options and record: no I/O, no secret."""

    def list_volumes(self) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """Volumes other hosts made: (name, options, record) each."""


def target_text(target: Target) -> str:
    """Where a share is, for messages: //host/share[/dir] or host:export."""
    if isinstance(target, NfsTarget):
        return f"{target.host}:{target.export}"
    return target.unc


class ShareSettings(BackendSettings):
    """Settings every share driver has."""

    smb_host: str | None = None  # the SMB server to mount (default: the provider's)
    client: Literal["auto", "kernel", "fuse"] = "auto"


def presentation_options() -> list[Option]:
    """Options every share driver takes for how its files look, and which client mounts it.

    They say how this host mounts the share, not what the share is (identity=False): a host
    that adopted a share another host made may give its own."""
    return [
        host_option("uid", canonical_int(_parse_id), "owner of every file (the mount's uid=)"),
        host_option("gid", canonical_int(_parse_id), "group of every file (the mount's gid=)"),
        host_option("file_mode", canonical_mode, "permissions of files, octal (0755)"),
        host_option("dir_mode", canonical_mode, "permissions of directories, octal (0755)"),
        host_option("readonly", canonical_bool, "mount read-only (false)"),
        host_option("client", one_of(*clients.CLIENT_CHOICES), "auto, kernel or fuse (smbnetfs)"),
    ]


def host_option(name: str, canonical: Callable[[str], str], help: str) -> Option:
    """An option saying how this host uses a share (mount, remove), not what it is."""
    return Option(name, canonical, help, identity=False)
