"""Prometheus metrics for one daemon: the shared instruments plus per volume gauges.

Volume metrics are read from the service's memory at scrape time: the numbers Status shows
(usage is refreshed in the background as before), so a scrape does no I/O. Volumes are a
label; option values are not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orlop.core.model import State
from orlop.ops.counters import REGISTRY

if TYPE_CHECKING:
    from orlop.core.service import VolumeService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class VolumeCollector(Collector):
    """Per volume gauges from the service's memory: no I/O at scrape time."""

    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["driver", "volume"]
        count = GaugeMetricFamily("orlop_volumes", "Volumes known, by driver.", labels=["driver"])
        size = GaugeMetricFamily("orlop_volume_size_bytes", "Volume capacity.", labels=labels)
        used = GaugeMetricFamily("orlop_volume_used_bytes", "Bytes used.", labels=labels)
        free = GaugeMetricFamily("orlop_volume_free_bytes", "Bytes free.", labels=labels)
        mounts = GaugeMetricFamily("orlop_volume_mounts", "Docker mounts held.", labels=labels)
        attached = GaugeMetricFamily(
            "orlop_volume_attached", "1 if the volume is attached to this host.", labels=labels
        )
        faulted = GaugeMetricFamily(
            "orlop_volume_faulted", "1 if the volume has a recorded fault.", labels=labels
        )
        for driver, volumes in self.service.registry.volumes.items():
            count.add_metric([driver], len(volumes))
            for volume in list(volumes.values()):
                key = [driver, volume.name]
                usage = volume.usage
                if usage is not None:
                    used.add_metric(key, usage.used)
                    if usage.size is not None:
                        size.add_metric(key, usage.size)
                    if usage.free is not None:
                        free.add_metric(key, usage.free)
                mounts.add_metric(key, len(volume.mount_ids))
                attached.add_metric(key, 1 if volume.state is State.ATTACHED else 0)
                faulted.add_metric(key, 1 if volume.fault else 0)
        yield from (count, size, used, free, mounts, attached, faulted)


class MetricsExporter:
    """What the metrics listener serves for one daemon."""

    def __init__(self, service: VolumeService) -> None:
        self.volumes = CollectorRegistry(auto_describe=False)
        self.volumes.register(VolumeCollector(service))

    def render(self) -> bytes:
        return generate_latest(REGISTRY) + generate_latest(self.volumes)
