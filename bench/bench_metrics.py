"""What metrics cost: Get with and without its counter, and a scrape of 10,000 volumes.

    .venv/bin/python bench/bench_metrics.py [--volumes 10000] [--gets 200000]

In-process, on a VolumeService over the in-memory test backend: the worst case for the Get
counter (a memory read with no socket and no HTTP around it; over Docker's protocol the same
microseconds are a far smaller share). Targets (issue 20): metrics ≤ 3 % of Get throughput
over the protocol; a scrape of 10,000 volumes ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orlop.backends.base import BackendContext
from orlop.core.model import Usage
from orlop.core.service import VolumeService
from orlop.ops.metrics import MetricsExporter
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend


def gets_per_second(call: object, driver: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call(driver, "v0")  # type: ignore[operator]
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--volumes", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        harness = Harness(MemoryBackend(BackendContext("mem", root)), "mem", f"{root}/o.db")
        service = harness.service
        for index in range(args.volumes):
            harness.create(f"v{index}").usage = Usage(used=index, size=10**9, free=10**9 - index)
        bare = VolumeService.get.__wrapped__  # type: ignore[attr-defined]
        counted, uncounted = [], []
        for _ in range(5):
            counted.append(gets_per_second(service.get, "mem", args.gets))
            uncounted.append(gets_per_second(lambda d, n: bare(service, d, n), "mem", args.gets))
        on, off = statistics.median(counted), statistics.median(uncounted)
        print(
            f"get in-process: {off:,.0f}/s without metrics, {on:,.0f}/s with "
            f"({(off - on) / off * 100:.1f} % less; {1e6 / on - 1e6 / off:.2f} µs per call)"
        )
        exporter = MetricsExporter(service)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            page = exporter.render()
            times.append(time.perf_counter() - started)
        print(
            f"scrape of {args.volumes:,} volumes: {statistics.median(times) * 1000:.1f} ms "
            f"median of 5 ({len(page) / 1e6:.1f} MB)"
        )
        harness.close()


if __name__ == "__main__":
    main()
