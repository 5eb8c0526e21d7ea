"""A stateful fake of the Compute Engine v1 API subset Orlop uses, on 127.0.0.1.

Zones, disks (insert/get/list/aggregatedList with label filters/delete/resize/setLabels/
createSnapshot), instances (get/attachDisk/detachDisk), snapshots, zone and global
operations. Every request and answer is checked against the Compute v1 discovery document
(`gce_discovery.py`); what does not fit is answered 400 and recorded in `violations`, which
the fixtures assert empty. Quirks kept: asynchronous operations (PENDING → RUNNING → DONE
after `delay`), GCE's error bodies and reasons, refusal of a disk in READ_WRITE use by
another instance (naming it), label fingerprints, request IDs run once, int64 as strings.
As unkind as the service is allowed to be: a disk's `users` changes when its attach or
detach operation turns DONE, never when it is accepted; `zoneOperations.wait` answers after
`wait_longest` seconds even when the operation is not DONE (Compute Engine promises DONE or
its deadline, whichever first); every request takes `latency` seconds, half before the
state is read and half after.
Disk state and the HTTP front end live in `gce_disks.py` and `gce_http.py`.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers.gce.discovery import Discovery
from tests.servers.gce.ops import ApiError, Clock, now
from tests.support.cloud.presenter import DevicePresenter

ZONES = ("us-central1-a", "us-central1-b", "europe-west1-b")
# The disk types the fake offers, with the sizes (GiB) Compute Engine accepts for each.
DISK_TYPE_SIZES = {
    "pd-standard": (10, 65536),
    "pd-balanced": (10, 65536),
    "pd-ssd": (10, 65536),
    "pd-extreme": (500, 65536),
    "hyperdisk-balanced": (4, 65536),
    "hyperdisk-throughput": (2048, 32768),
    "hyperdisk-extreme": (64, 65536),
}
TAKES_IOPS = {"pd-extreme", "hyperdisk-balanced", "hyperdisk-extreme"}
TAKES_THROUGHPUT = {"hyperdisk-balanced", "hyperdisk-throughput"}


@dataclass
class Instance:
    name: str
    zone: str
    id: str
    by_id_dir: Path | None = None  # where the guest's /dev/disk/by-id is; None: no devices
    interface: str = "SCSI"  # or NVME: the guest shows only google-<device name>
    disks: list[dict[str, Any]] = field(default_factory=list)  # AttachedDisk resources


class GceServer:
    """The state; `gce_http.serve` puts it on a port."""

    def __init__(
        self,
        project: str = "orlop-test",
        delay: float = 0.02,
        presenter: DevicePresenter | None = None,
    ) -> None:
        self.project = project
        self.projects = {project, "orlop-locked"}  # orlop-locked refuses anonymous callers
        self.lock = threading.RLock()
        self.clock = Clock(self.lock, delay)
        self.latency = 0.0  # seconds per request
        self.discovery = Discovery()
        self.presenter = presenter
        self.violations: list[str] = []
        self.calls: list[str] = []  # method IDs, in order
        self.base = ""  # http://127.0.0.1:PORT/compute/v1, set by the front end
        self.disks: dict[tuple[str, str], dict[str, Any]] = {}  # (zone, name) → resource
        self.pending: dict[tuple[str, str], set[str]] = {}  # attachments not DONE yet
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.instances: dict[tuple[str, str], Instance] = {}
        self.request_ids: dict[str, dict[str, Any]] = {}
        self.failures: list[ApiError] = []  # answered, in order, before the next requests
        self._ids = itertools.count(1000000000000000001)

    def next_id(self) -> str:
        return str(next(self._ids))

    # test controls -------------------------------------------------------------------------
    def add_instance(
        self,
        name: str,
        zone: str = ZONES[0],
        by_id_dir: Path | None = None,
        interface: str = "SCSI",
    ) -> Instance:
        with self.lock:
            instance = Instance(name, zone, self.next_id(), by_id_dir, interface)
            self.instances[(zone, name)] = instance
            return instance

    def fail_next(self, status: int, reason: str, message: str, count: int = 1) -> None:
        """The next `count` API requests are refused so (rate limits, backend errors)."""
        with self.lock:
            self.failures += [ApiError(status, reason, message)] * count

    def set_delay(self, delay: float) -> None:
        self.clock.delay = delay

    def set_unkind(self, latency: float = 0.0, wait_longest: float = 30.0) -> None:
        """Per-request latency and the longest an operations.wait waits (0 and 30 s: kind)."""
        self.latency = latency
        self.clock.wait_longest = wait_longest

    # URLs ----------------------------------------------------------------------------------
    def url(self, path: str, project: str | None = None) -> str:
        return f"{self.base}/projects/{project or self.project}/{path}"

    def zone_of(self, project: str, zone: str) -> str:
        if zone not in ZONES:
            raise ApiError(
                404, "notFound", f"The resource 'projects/{project}/zones/{zone}' was not found"
            )
        return zone

    def zone_resource(self, project: str, zone: str) -> dict[str, Any]:
        return {
            "kind": "compute#zone",
            "id": str(2000 + ZONES.index(zone)),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": zone,
            "description": zone,
            "status": "UP",
            "region": self.url(f"regions/{zone.rsplit('-', 1)[0]}", project),
            "selfLink": self.url(f"zones/{zone}", project),
            "availableCpuPlatforms": ["Intel Cascade Lake"],
            "supportsPzs": False,
        }

    def instance(self, project: str, zone: str, name: str) -> Instance:
        found = self.instances.get((self.zone_of(project, zone), name))
        if found is None:
            raise ApiError(
                404,
                "notFound",
                f"The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found",
            )
        return found

    def instance_resource(self, project: str, instance: Instance) -> dict[str, Any]:
        zone = f"zones/{instance.zone}"
        return {
            "kind": "compute#instance",
            "id": instance.id,
            "creationTimestamp": now(),
            "name": instance.name,
            "machineType": self.url(f"{zone}/machineTypes/e2-medium", project),
            "status": "RUNNING",
            "zone": self.url(zone, project),
            "disks": [dict(d) for d in instance.disks],
            "selfLink": self.url(f"{zone}/instances/{instance.name}", project),
            "labelFingerprint": "42WmSpB8rSM=",
            "fingerprint": "c2FtcGxlZmluZ2VycHJpbnQ=",
        }
