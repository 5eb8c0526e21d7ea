"""Prometheus metrics for one daemon: the shared instruments plus per volume gauges.

Volume metrics are read from the service's memory at scrape time: the numbers Status shows
(usage is refreshed in the background as before), so a scrape does no I/O. Volumes are a
label; option values are not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import generate_latest

from orlop.core.model import State
from orlop.ops.counters import REGISTRY

if TYPE_CHECKING:
    from orlop.core.service import VolumeService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


_VOLUME_GAUGES = (
    ("orlop_volume_size_bytes", "Volume capacity (the usage Status shows)."),
    ("orlop_volume_used_bytes", "Bytes used."),
    ("orlop_volume_free_bytes", "Bytes free."),
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
    size, used, free, mounts, attached, faulted = rows
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
            mounts.append(f"{key}{len(volume.mount_ids)}\n")
            attached.append(f"{key}{1 if volume.state is State.ATTACHED else 0}\n")
            faulted.append(f"{key}{1 if volume.fault else 0}\n")
    parts = ["# HELP orlop_volumes Volumes known, by driver.\n# TYPE orlop_volumes gauge\n"]
    parts += counts
    for (name, help_text), samples in zip(_VOLUME_GAUGES, rows, strict=True):
        parts.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        parts.extend(name + sample for sample in samples)
    return "".join(parts).encode()


class MetricsExporter:
    """What the metrics listener serves for one daemon."""

    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def render(self) -> bytes:
        return generate_latest(REGISTRY) + volume_page(self.service)
