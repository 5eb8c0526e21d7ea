"""What metrics cost: the Docker protocol with the metrics listener on and off, Get with and
without its counter in-process, and a scrape of 10,000 volumes.

    .venv/bin/python bench/bench_metrics.py [--duration 2] [--repeat 5] [--scrape-every 1]
                                            [--volumes 10000] [--gets 200000]

1. Protocol (as root, like bench_protocol.py): two `orlop serve` daemons with the same
   configuration (directory backend, log level info, 1,000 volumes) except that one has the
   `metrics` listener on a unix socket and is scraped every `--scrape-every` seconds while
   it is measured (Prometheus scrapes every 15 to 60 s: this is the harsher case). Get,
   Path and List of 1,000 volumes, 1 and 4 clients, interleaved, median of `--repeat`.
2. In-process, on a VolumeService over the in-memory test backend: the worst case for the
   Get counter (a memory read with no socket and no HTTP around it).
3. A scrape of `--volumes` volumes (each with size, used, free and inodes).

Targets (issue 20): metrics cost ≤ 3 % of Get throughput over the protocol; a scrape of
10,000 volumes ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.bench_protocol import SCENARIOS, Scripts, _check, _median, _name
from bench.loadgen import Result
from bench.peers import Orlop, environment
from orlop.backends.base import BackendContext
from orlop.core.model import Usage
from orlop.core.service import VolumeService
from orlop.ops.metrics import MetricsExporter
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend
from tests.support.scrape import fetch

CLIENTS = (1, 4)
VOLUMES = 1000
GET_TARGET_PERCENT = 3.0
SCRAPE_TARGET_MS = 100.0


class MeteredOrlop(Orlop):
    """The same daemon as `Orlop`, with the metrics listener on a unix socket."""

    label = "orlop+metrics"

    def __init__(self) -> None:
        super().__init__()
        config = yaml.safe_load(self.daemon.config_path.read_text())
        self.metrics = str(self.daemon.root / "metrics.sock")
        config["metrics"] = self.metrics
        self.daemon.config_path.write_text(yaml.safe_dump(config))


class Scraper:
    """Scrape `address` every `interval` seconds in a thread, as Prometheus would."""

    def __init__(self, address: str, interval: float) -> None:
        self.address, self.interval = address, interval
        self.stop = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            status, _ = fetch(self.address, "/metrics")
            if status != 200:
                raise RuntimeError(f"scrape answered HTTP {status}")
            self.scrapes += 1

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


Row = tuple[str, int, Result, Result, float]  # …, median on/off of the pairs


def measure(peer: Orlop, scripts: Scripts, clients: int, args: argparse.Namespace) -> Result:
    return loadgen.run(peer.socket, scripts, clients, args.duration, args.warmup, peer.pid)


def protocol(args: argparse.Namespace) -> tuple[list[Row], int]:
    plain, metered = Orlop(), MeteredOrlop()
    rows: list[Row] = []
    scrapes = 0
    try:
        for peer in (plain, metered):
            peer.start()
            peer.create([_name(i) for i in range(VOLUMES)])
        fetch(metered.metrics, "/metrics")  # the listener is up
        for label, scenario in (("Get", "Get"), ("Path", "Path"), ("List (1,000)", "List")):
            scripts = SCENARIOS[scenario]()
            for peer in (plain, metered):
                _check(peer, scripts, VOLUMES)
            for clients in CLIENTS:
                runs: dict[str, list[Result]] = {plain.label: [], metered.label: []}
                ratios = []
                for run in range(args.repeat):  # interleaved, the order swapped each time
                    pair = (plain, metered) if run % 2 == 0 else (metered, plain)
                    for peer in pair:
                        scraper = Scraper(metered.metrics, args.scrape_every)
                        with scraper if peer is metered else contextlib.nullcontext():
                            result = measure(peer, scripts, clients, args)
                        runs[peer.label].append(result)
                        scrapes += scraper.scrapes
                    on, off = runs[metered.label][-1], runs[plain.label][-1]
                    ratios.append(on.ops_per_s / off.ops_per_s if off.ops else float("nan"))
                off_median, on_median = _median(runs[plain.label]), _median(runs[metered.label])
                rows.append((label, clients, off_median, on_median, statistics.median(ratios)))
                print(f"  measured {label} x{clients}", file=sys.stderr, flush=True)
    finally:
        plain.destroy()
        metered.destroy()
    return rows, scrapes


def print_protocol(rows: Sequence[Row]) -> list[bool]:
    head = (
        f"{'operation':<14} {'cl':>2} | {'off op/s':>9} {'p50 ms':>7} | "
        f"{'on op/s':>9} {'p50 ms':>7} | {'on/off':>6} {'pairs':>6} | "
        f"{'srv µs/op off':>13} {'on':>6}"
    )
    print(head)
    print("-" * len(head))
    verdicts = []
    for label, clients, off, on, pairs in rows:
        ratio = on.ops_per_s / off.ops_per_s if off.ops else float("nan")
        cpu_off = f"{off.server_cpu_us:.1f}" if off.server_cpu_us is not None else "-"
        cpu_on = f"{on.server_cpu_us:.1f}" if on.server_cpu_us is not None else "-"
        print(
            f"{label:<14} {clients:>2} | {off.ops_per_s:>9,.0f} {off.p50_ms:>7.3f} | "
            f"{on.ops_per_s:>9,.0f} {on.p50_ms:>7.3f} | {ratio:>6.3f} {pairs:>6.3f} | "
            f"{cpu_off:>13} {cpu_on:>6}"
        )
        if label == "Get":
            verdicts.append((1 - pairs) * 100 <= GET_TARGET_PERCENT)
    return verdicts


def gets_per_second(call: Callable[[str, str], object], driver: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call(driver, "v0")
    return count / (time.perf_counter() - started)


def in_process(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory() as root:
        harness = Harness(MemoryBackend(BackendContext("mem", root)), "mem", f"{root}/o.db")
        service = harness.service
        for index in range(args.volumes):
            harness.create(f"v{index}").usage = Usage(
                used=index,
                size=10**9,
                free=10**9 - index,
                inodes=65536,
                inodes_used=index % 65536,
                inodes_free=65536 - index % 65536,
            )
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
        scrape_ms = statistics.median(times) * 1000
        print(
            f"scrape of {args.volumes:,} volumes: {scrape_ms:.1f} ms "
            f"median of 5 ({len(page) / 1e6:.1f} MB)"
        )
        harness.close()
    return scrape_ms <= SCRAPE_TARGET_MS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each one")
    parser.add_argument("--repeat", type=int, default=5, help="runs per cell; median shown")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds")
    parser.add_argument("--volumes", type=int, default=10_000, help="for the scrape")
    parser.add_argument("--gets", type=int, default=200_000, help="in-process Gets per run")
    parser.add_argument("--no-protocol", action="store_true", help="in-process parts only")
    args = parser.parse_args(argv)

    print(f"# metrics benchmark — {environment()}")
    verdicts = []
    if not args.no_protocol:
        print(
            f"# {args.repeat} runs of {args.duration:g}s per cell, median by throughput; "
            f"the metrics daemon scraped every {args.scrape_every:g}s while measured\n"
        )
        rows, scrapes = protocol(args)
        print("Docker protocol, metrics listener off vs on (same daemon configuration):")
        verdicts += print_protocol(rows)
        print(f"({scrapes} scrapes during the metered runs)")
        print(
            "(on/off: of the median runs; pairs: the median of each run's on/off, measured "
            "back to back, the verdict's figure)\n"
        )
        for label, clients, _, _, pairs in rows:
            if label == "Get":
                cost = (1 - pairs) * 100
                ok = cost <= GET_TARGET_PERCENT
                print(
                    f"  Get x{clients}: metrics cost {cost:+.1f} % of throughput ≤ "
                    f"{GET_TARGET_PERCENT:g} %: {'met' if ok else 'MISSED'}"
                )
        print()
    scrape_ok = in_process(args)
    print(
        f"  scrape of {args.volumes:,} volumes ≤ {SCRAPE_TARGET_MS:g} ms: "
        f"{'met' if scrape_ok else 'MISSED'}"
    )
    verdicts.append(scrape_ok)
    print(f"  {'all targets met' if all(verdicts) else 'SOME TARGETS MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
