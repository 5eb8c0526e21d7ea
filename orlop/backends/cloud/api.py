"""The provider API: what one cloud implements so the cloud-disk layer can drive its disks.

A provider translates; it does not decide. It makes single API calls and reports what the
cloud says, as `Disk`s, `Snapshot`s and `CloudError`s of a few kinds. Everything that
sequences calls — adopting a disk by name, waiting out a detach, preempting, the race guard
between hosts, device discovery with a timeout, detaching after a failed attach, retries
with jittered backoff, per-volume state — is the layer's (`layer.py`, wiring `calls.py`,
`adopt.py` and `attach.py`), told once for every cloud. `tests/support/cloud/memory.py`
keeps this contract in memory, for the layer's unit tests.

Rules for implementers:

* Methods are blocking and may be called from several threads at once (on different disks).
* Every method raises `CloudError` (with the right `ErrorKind`) for what the cloud refuses
  or fails, and `orlop.core.model.InvalidOption` / `NotFound` for a user's mistake found
  before any call that changes something. Never a raw client exception.
* A call that starts an asynchronous operation (GCE zone operations, DigitalOcean actions)
  may return once the cloud has accepted it, or wait for the operation itself; the layer
  confirms the outcome with `get_disk` either way.
* Labels: the layer hands logical labels (`LABEL_*` keys, raw values such as a Docker volume
  name with capitals and dots); the provider stores them however the cloud allows (tags,
  labels, metadata, a description, the disk name itself) using `naming.py`, and gives them
  back decoded in `Disk.labels`. Another host finds the volume through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from orlop.backends.base import Check
from orlop.backends.settings import BackendSettings
from orlop.core.model import BackendError
from orlop.core.options import OptionSet

# Logical labels every Orlop disk carries (values are raw; the provider encodes them).
LABEL_MANAGED = "managed-by"  # always "orlop"
LABEL_NAMESPACE = "namespace"  # hosts that share volumes share a namespace
LABEL_VOLUME = "volume"  # the Docker volume name, exactly
LABEL_TOKEN = "create-token"  # finds a disk whose create a crash interrupted
LABEL_CLAIM = "claim"  # "<instance> <nonce>": the race guard, only where the cloud lacks one
LABEL_SNAPSHOT = "snapshot"  # a snapshot's Orlop name


class ErrorKind(StrEnum):
    NOT_FOUND = "not found"  # the disk, snapshot, instance or zone does not exist
    IN_USE = "in use elsewhere"  # attached to another instance; the cloud refused
    THROTTLED = "throttled"  # rate limited: always safe to retry after a pause
    RETRYABLE = "retryable"  # a transient server fault: retry reads, examine writes
    INVALID = "invalid"  # the cloud refused the request's values
    CREDENTIALS = "credentials"  # missing, wrong or insufficient credentials
    UNREACHABLE = "unreachable"  # no answer from the API endpoint
    FAILED = "failed"  # anything else


class CloudError(BackendError):
    """A cloud API call failed. The message is for users (never a secret); `holder` names the
    instance that holds a disk when `kind` is IN_USE and the cloud said which."""

    def __init__(
        self, message: str, kind: ErrorKind, code: str = "", holder: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.holder = holder


class CloudSettings(BackendSettings):
    """Settings every cloud driver has; a provider's settings model extends this one."""

    namespace: str = "default"
    by_id_dir: str = "/dev/disk/by-id"
    allow_suid_dev: bool = False  # the block layer's; listed so every cloud accepts it
    attach_timeout: float = 120.0
    detach_timeout: float = 120.0
    create_timeout: float = 300.0
    claim_settle: float = 1.0  # the race guard's wait, for clouds that lack one
    api_max_attempts: int = 10
    api_retry_base: float = 0.25
    api_retry_cap: float = 20.0
    poll_max: float = 2.0
    discover_interval: float = 30.0  # how often the daemon adopts volumes other hosts made


@dataclass(frozen=True, slots=True)
class Identity:
    """This machine as the cloud knows it."""

    instance: str  # the ID that attach calls take (instance name, droplet ID, SDC ID, VM moref)
    zone: str | None = None  # where a disk must be to attach here; None: anywhere
    region: str | None = None
    what: str = "instance"  # how the cloud calls an instance, for messages ("droplet", "VM")


@dataclass(frozen=True, slots=True)
class Attachment:
    instance: str
    state: Literal["attaching", "attached", "detaching"] = "attached"
    device_name: str | None = None  # the name the attachment was given, if the cloud has one
    read_only: bool = False


@dataclass(slots=True)
class Disk:
    """One disk as the cloud reports it, labels decoded."""

    id: str  # the provider's stable ID, what every call takes
    name: str  # the cloud's display name for it (encoded)
    size: int  # bytes
    state: Literal["creating", "ready", "error", "deleting"]
    zone: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # logical keys, raw values
    attachments: list[Attachment] = field(default_factory=list)
    # Provider facts for the record, Status and adoption checks (type, iops, encrypted, …),
    # with option names as keys where they correspond to an option.
    facts: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None  # RFC 3339

    @property
    def volume(self) -> str | None:
        return self.labels.get(LABEL_VOLUME)

    def attached_to(self, instance: str) -> Attachment | None:
        return next((a for a in self.attachments if a.instance == instance), None)

    def others(self, instance: str) -> list[Attachment]:
        return [a for a in self.attachments if a.instance != instance]


@dataclass(slots=True)
class Snapshot:
    id: str
    name: str  # Orlop's name (LABEL_SNAPSHOT), "" for one Orlop did not make
    volume: str  # the Docker volume it was taken of, "" if unknown
    state: str  # the cloud's word: pending, completed, READY, …
    size: int | None = None  # bytes of the disk it was taken of
    created_at: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "volume": self.volume,
            "state": self.state,
            "size": self.size,
            "created_at": self.created_at,
            **self.facts,
        }


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """What the layer asks `create_disk` for."""

    volume: str  # the Docker volume name
    namespace: str
    labels: dict[str, str]  # logical labels to set (managed-by, namespace, volume, token)
    token: str  # idempotency token: the same create repeated must not make two disks
    options: dict[str, str]  # the volume's canonical options (provider's and the block layer's)
    snapshot: Snapshot | None = None  # resolved from the `from_snapshot` option


@runtime_checkable
class CloudProvider(Protocol):
    kind: ClassVar[str]  # the driver kind: "ebs", "gce", …
    disk_word: ClassVar[str]  # how the cloud calls a disk, for messages: "EBS volume"
    # The provider's own volume options (size, type, zone, from_snapshot, …). The layer adds
    # preempt and keep_on_remove; the block layer adds fs, mkfs_options, mount_options.
    options: ClassVar[OptionSet]
    settings_model: ClassVar[type[CloudSettings]]
    # True where the cloud itself refuses to attach a disk that is attached elsewhere (EC2's
    # VolumeInUse, GCE's READ_WRITE rule): the layer then needs no race guard of its own.
    refuses_second_attach: ClassVar[bool]

    # `settings`: an instance of `settings_model`, validated; `state_dir`: the provider's own.
    def __init__(self, settings: Any, state_dir: str) -> None: ...

    def identity(self) -> Identity:
        """This machine (from the settings, else the cloud's metadata service); cached."""

    def validate(self, options: dict[str, str]) -> None:
        """Reject option values and combinations the cloud would refuse; no I/O."""

    def create_disk(self, spec: DiskSpec, identity: Identity) -> Disk:
        """Check what needs the API (zone, type, snapshot exist) and only then create; return
        the disk as the cloud reports it (it may still be `creating`)."""

    def get_disk(self, disk_id: str) -> Disk | None:
        """The disk, or None if it does not exist (or is being deleted)."""

    def find_disks(self, namespace: str, volume: str | None = None) -> list[Disk]:
        """Orlop's disks of `namespace` (all, or those of one Docker volume name)."""

    def delete_disk(self, disk: Disk) -> None:
        """Delete a detached disk; already gone is not an error."""

    def set_labels(self, disk: Disk, labels: Mapping[str, str | None]) -> None:
        """Set (or, with None, remove) logical labels on the disk."""

    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        """The name to attach the disk under, if the cloud takes one (EBS /dev/xvdf, GCE
        device name); None lets the cloud choose. Called under the layer's attach lock."""

    def attach_disk(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        """Attach the disk read-write to this machine."""

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        """Detach the disk from `instance` (another one's too, when preempting)."""

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        """Where the guest shows the attached disk (by-id links first)."""

    def resize_disk(self, disk: Disk, size: int) -> None:
        """Grow the disk to at least `size` bytes; check the new size against the disk's own
        type limits (its IOPS, its type) before calling."""

    def options_of(self, disk: Disk) -> dict[str, str]:
        """The canonical options that describe an existing disk (size, type, zone, …), for
        adopting it (compare with what was asked) and for discovery."""

    def describe(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Facts for Status from the volume's record; no I/O, never a secret."""

    @classmethod
    def host_checks(cls) -> list[Check]:
        """What this provider needs from the host (its client library, …) for doctor."""


@runtime_checkable
class CloudSnapshots(Protocol):
    """Snapshots, for a provider whose cloud has them."""

    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        """Start a snapshot of the disk, carrying the logical `labels`."""

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        """Orlop's snapshots of `namespace`, optionally of one volume or with one name."""

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        """Any snapshot the account can read, by the cloud's ID; None if there is none."""

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        """Delete it; already gone is not an error."""

    def is_snapshot_id(self, text: str) -> bool:
        """Whether `text` has the shape of this cloud's snapshot IDs (snap-…), so
        `from_snapshot` can take an ID as well as an Orlop snapshot name."""


def record_of(disk: Disk) -> dict[str, Any]:
    """The volume record the layer keeps for a disk."""
    return {
        "disk_id": disk.id,
        "disk_name": disk.name,
        "zone": disk.zone,
        "size": disk.size,
        "created_at": disk.created_at,
        **{key: value for key, value in disk.facts.items() if key not in ("labels",)},
    }
