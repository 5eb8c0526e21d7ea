"""What the events journal costs a volume operation: Create, Mount, Unmount, Remove cycles on
a VolumeService over the in-memory test backend, with the journal persisted (a file in a
temporary directory, a writer thread fsyncing each batch, as `orlop serve` has it) and with
a journal in memory only (the peer: no disk at all), side by side; and one `emit` alone.

    .venv/bin/python bench/bench_events.py [--cycles 2000] [--repeat 5] [--emits 100000]

Target (issue 20's rule for the journal): an operation never waits on the journal's disk,
so a persisted journal costs a cycle ≤ 1.10 times the memory-only one (median of `--repeat`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orlop.backends.base import BackendContext
from orlop.core.events import EventJournal
from orlop.core.registry import Driver
from orlop.core.service import VolumeService
from orlop.core.store import Store
from tests.support.memory_backend import MemoryBackend

TARGET = 1.10


async def _cycles(service: VolumeService, cycles: int) -> float:
    started = time.perf_counter()
    for n in range(cycles):
        name = f"v{n}"
        await service.create("mem", name, {})
        await service.mount("mem", name, "m1")
        await service.unmount("mem", name, "m1")
        await service.remove("mem", name)
    return time.perf_counter() - started


def cycle_seconds(persisted: bool, cycles: int) -> float:
    """Seconds per Create+Mount+Unmount+Remove cycle."""
    with tempfile.TemporaryDirectory(prefix="orlop-bench-events-") as root:
        journal = EventJournal(str(Path(root, "events.jsonl")) if persisted else None)
        backend = MemoryBackend(BackendContext("mem", root))
        service = VolumeService(
            Store(str(Path(root, "orlop.db"))), [Driver("mem", backend, {})], events=journal
        )
        try:
            elapsed = asyncio.run(_cycles(service, cycles))
        finally:
            service.close()
        return elapsed / cycles


def emit_seconds(persisted: bool, emits: int) -> float:
    with tempfile.TemporaryDirectory(prefix="orlop-bench-events-") as root:
        journal = EventJournal(str(Path(root, "events.jsonl")) if persisted else None)
        started = time.perf_counter()
        for n in range(emits):
            journal.emit("mounted", f"mounted volume v{n}", "mem", f"v{n}", mounts=1)
        elapsed = time.perf_counter() - started
        journal.close()
        return elapsed / emits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--emits", type=int, default=100_000)
    args = parser.parse_args()
    import logging

    logging.disable(logging.INFO)  # the events' own log lines: not what is measured here

    persisted, memory = [], []
    for _ in range(args.repeat):  # interleaved, so drift hits both alike
        persisted.append(cycle_seconds(True, args.cycles))
        memory.append(cycle_seconds(False, args.cycles))
    on, off = statistics.median(persisted), statistics.median(memory)
    emit_on, emit_off = emit_seconds(True, args.emits), emit_seconds(False, args.emits)
    ratio = on / off
    print(f"{'':36}{'journal on disk':>18}{'memory only':>14}{'ratio':>8}")
    print(
        f"{'create+mount+unmount+remove (µs)':36}{on * 1e6:>18.1f}{off * 1e6:>14.1f}"
        f"{ratio:>7.2f}x  {'met' if ratio <= TARGET else 'MISSED'} (≤ {TARGET:.2f}x)"
    )
    print(f"{'one emit (µs)':36}{emit_on * 1e6:>18.2f}{emit_off * 1e6:>14.2f}")
    print(f"median of {args.repeat} runs of {args.cycles} cycles; {args.emits} emits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
