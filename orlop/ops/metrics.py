"""Prometheus metrics for one daemon: the shared instruments plus per volume gauges.

Volume metrics are read from the service's memory at scrape time: the numbers Status shows
(usage is refreshed in the background as before), so a scrape does no I/O. Volumes are a
label; option values are not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import generate_latest

from orlop.core.model import State
from orlop.ops.counters import REGISTRY, VOLUME_WORK

if TYPE_CHECKING:
    from orlop.core.service import VolumeService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


_VOLUME_GAUGES = (
    ("orlop_volume_size_bytes", "Volume capacity (the usage Status shows)."),
    ("orlop_volume_used_bytes", "Bytes used."),
    ("orlop_volume_free_bytes", "Bytes free."),
    ("orlop_volume_inodes", "Inodes the volume's filesystem has (where it has a fixed count)."),
    ("orlop_volume_inodes_used", "Inodes used (a plain directory volume: entries in its tree)."),
    ("orlop_volume_inodes_free", "Inodes free (for a plain directory, its filesystem's)."),
    ("orlop_volume_mounts", "Docker mounts held."),
    ("orlop_volume_attached", "1 if the volume is attached to this host."),
    ("orlop_volume_faulted", "1 if the volume has a recorded fault."),
)


def volume_page(service: VolumeService) -> bytes:
    """Per volume gauges from the service's memory (no I/O), in Prometheus' text format.

    Written by hand, not through the library's collector: 10,000 volumes make 60,000
    samples, and building a sample object for each costs most of a scrape's budget. Driver
    and volume names are validated (ASCII letters, digits, `_.-`), so no label needs escaping.
    """
    rows: list[list[str]] = [[] for _ in _VOLUME_GAUGES]
    size, used, free, inodes, inodes_used, inodes_free, mounts, attached, faulted = rows
    counts = []
    for driver, volumes in service.registry.volumes.items():
        counts.append(f'orlop_volumes{{driver="{driver}"}} {len(volumes)}\n')
        for volume in list(volumes.values()):
            key = f'{{driver="{driver}",volume="{volume.name}"}} '
            usage = volume.usage
            if usage is not None:
                used.append(f"{key}{usage.used}\n")
                if usage.size is not None:
                    size.append(f"{key}{usage.size}\n")
                if usage.free is not None:
                    free.append(f"{key}{usage.free}\n")
                if usage.inodes is not None:
                    inodes.append(f"{key}{usage.inodes}\n")
                if usage.inodes_used is not None:
                    inodes_used.append(f"{key}{usage.inodes_used}\n")
                if usage.inodes_free is not None:
                    inodes_free.append(f"{key}{usage.inodes_free}\n")
            mounts.append(f"{key}{len(volume.mount_ids)}\n")
            attached.append(f"{key}{1 if volume.state is State.ATTACHED else 0}\n")
            faulted.append(f"{key}{1 if volume.fault else 0}\n")
    parts = ["# HELP orlop_volumes Volumes known, by driver.\n# TYPE orlop_volumes gauge\n"]
    parts += counts
    for (name, help_text), samples in zip(_VOLUME_GAUGES, rows, strict=True):
        parts.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        parts.extend(name + sample for sample in samples)
    parts += work_page(service)
    return "".join(parts).encode()


_WORK_HELP = {"snapshot_schedule": "Scheduled snapshot runs", "backup": "Backups"}
# (name suffix, WorkRuns field, help); the period only for schedules (backups have none)
_WORK_GAUGES = (
    ("last_success_timestamp_seconds", "last_success", "when the last one succeeded (unix time)"),
    ("last_duration_seconds", "last_duration", "how long the last one took, whatever its result"),
    ("period_seconds", "period", "how often one is due (the schedule's shortest period)"),
)


def work_page(service: VolumeService) -> list[str]:
    """Per volume background work (scheduled snapshots, backups) of the volumes that exist
    now: runs by result, when the last one succeeded, how long the last one took; and how
    often a schedule is due, so an alert can say "older than its schedule"."""
    volumes = service.registry.volumes
    parts = []
    for work, by_volume in VOLUME_WORK.items():
        what = _WORK_HELP[work]
        runs = [
            (f'driver="{driver}",volume="{name}"', found)
            for (driver, name), found in list(by_volume.items())
            if name in volumes.get(driver, {})
        ]
        runs_total = f"orlop_{work}_runs"
        parts.append(f"# HELP {runs_total} {what} of a volume, by result (ok, failed).\n")
        parts.append(f"# TYPE {runs_total} counter\n")
        for key, found in runs:
            parts.append(f'{runs_total}_total{{{key},result="ok"}} {found.ok}\n')
            parts.append(f'{runs_total}_total{{{key},result="failed"}} {found.failed}\n')
        for suffix, field, help_text in _WORK_GAUGES:
            if field == "period" and work != "snapshot_schedule":
                continue
            name = f"orlop_{work}_{suffix}"
            parts.append(f"# HELP {name} {what}: {help_text}.\n# TYPE {name} gauge\n")
            for key, found in runs:
                sample = getattr(found, field)
                if sample is not None:
                    parts.append(f"{name}{{{key}}} {sample}\n")
    return parts


class MetricsExporter:
    """What the metrics listener serves for one daemon."""

    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def render(self) -> bytes:
        return generate_latest(REGISTRY) + volume_page(self.service)
