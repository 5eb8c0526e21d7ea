"""What a cloud's test server offers the cloud-disk conformance suite.

Each provider's tests implement `CloudTestbed` over its test server (a faithful fake, moto,
the real Cinder, vcsim) and hand it to the suite (`tests/contracts/cloud.py`) by
subclassing `CloudDiskConformance` and overriding its `testbed` fixture. A testbed makes
*hosts*: instance identities on the same server, each with its own state directory and
by-id directory where the shared `DevicePresenter` shows the disks attached to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class CloudHost:
    """One machine as a cloud driver sees it."""

    instance: str  # the instance ID the cloud reports in attachments (for assertions)
    kind: str  # the driver kind ("gce", "ebs", …)
    settings: dict[str, Any]  # the complete driver settings for this host (identity, endpoint,
    # credentials, namespace, by_id_dir, short timeouts) — what an orlop.yaml would hold
    state_dir: Path  # private state directory of this host's driver
    extra: dict[str, Any] = field(default_factory=dict)

    def driver_config(self, **options: str) -> dict[str, Any]:
        """This host's driver entry for an orlop.yaml."""
        return {"backend": self.kind, "options": options, "settings": self.settings}


class CloudTestbed(Protocol):
    kind: str
    # Options for a small valid volume (size at the cloud's minimum, so tests stay cheap),
    # and a size (bytes) a grow can reach from it.
    create_options: dict[str, str]
    grow_to: int

    def host(self) -> CloudHost:
        """A new machine: a new instance on the server, its device presenter running."""

    def cloud_disks(self, namespace: str) -> list[dict[str, Any]]:
        """What the server itself holds for `namespace` (for assertions, bypassing Orlop):
        one dict per disk with at least `id`, `volume` (the Docker name), `attached_to`
        (a list of instance IDs)."""

    def delete_behind_orlop(self, disk_id: str) -> None:
        """Delete a disk directly on the server, as a person with the cloud's console would."""
