"""The data-path and host faults of a chaos run (the API faults are the fault proxy's).

disk      the volume's disk (a FaultyDisk) stalls every request, or fails every read
          with EIO, for 1-3 s while the writer runs; meanwhile every live Orlop is asked
          Get (of the run's idle volume) and List over and over. Each must answer: one
          that does not within `HUNG` is a violation, and so is a median above `ANSWER`.
          After the fault the writer must acknowledge again (a stall) or may have ended
          with EIO (read errors); either way no acknowledged record may be lost (checked
          at the next start) and the filesystem must pass `e2fsck -fn` once detached.
full      a host's state directory (a tmpfs of `STATE_SIZE` of its own) is filled up
          for 1-3 steps: a Create or Mount it cannot record must be refused with an error
          that says so (`clear_full_error`), and nothing may be half-made (the invariants
          hold); an Unmount it cannot record stays owed until the space is back.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from orlop.host.run import run
from tests.chaos.checks import Violation
from tests.chaos.hosts import DaemonGone, SimHost

if TYPE_CHECKING:
    from tests.chaos.sim import Simulation

ANSWER = 0.1  # the median Get/List answer while a disk fails, at most (seconds)
HUNG = 5.0  # a call unanswered this long is hung
STATE_SIZE = "16m"
FILLER = ".chaos-filler"


def disk_fault(sim: Simulation, fault: str, seconds: float) -> str:
    assert sim.datapath.disk is not None and sim.writer is not None
    writer, before = sim.writer, len(sim.writer.acked)
    took: list[float] = []
    sim.datapath.set(fault, True)
    if fault == "errors":
        sim.eio_allowed = True  # a writer may meet the errors: it acknowledged nothing then
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for host in [h for h in sim.hosts if h.up]:
                for method, body in (("Get", {"Name": sim.idle}), ("List", {})):
                    began = time.perf_counter()
                    try:
                        host.call(method, timeout=HUNG, **body)
                    except DaemonGone as gone:
                        if host.up:
                            raise Violation(
                                f"{host.name} did not answer {method} within {HUNG:g} s while "
                                f"the disk had {fault}: {gone}"
                            ) from None
                        raise
                    took.append(time.perf_counter() - began)
            time.sleep(0.02)
    finally:
        sim.datapath.set(fault, False)
    sim.report.disk_faults[fault] += 1
    sim.report.answers_during_disk_faults.extend(took)
    median = statistics.median(took) if took else 0.0
    if median > ANSWER:
        raise Violation(
            f"Get/List answered in {median * 1000:.0f} ms (median of {len(took)}) while the "
            f"disk had {fault}; the bound is {ANSWER * 1000:.0f} ms"
        )
    deadline = time.monotonic() + 20
    while len(writer.acked) <= before and writer.alive():
        if time.monotonic() > deadline:
            raise Violation(f"the writer acknowledged nothing in 20 s after the disk's {fault}")
        time.sleep(0.02)
    if not writer.alive():
        return f"ok (the writer ended: {writer.process.returncode})"
    return f"ok ({len(took)} answers, median {median * 1000:.1f} ms)"


def mount_state_disk(host: SimHost) -> None:
    """The host's state directory on a tmpfs of its own, so it can be filled up."""
    state = host.daemon.state_dir
    state.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", f"size={STATE_SIZE},mode=0700", "tmpfs", str(state)])


def fill(host: SimHost) -> None:
    """Fill the host's state disk up to the last block."""
    fd = os.open(host.daemon.state_dir / FILLER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (b"\0" * (1 << 20), b"\0" * 4096, b"\0"):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
    finally:
        os.close(fd)


def empty(host: SimHost) -> None:
    Path(host.daemon.state_dir / FILLER).unlink(missing_ok=True)


def clear_full_error(error: str) -> bool:
    """Does a refusal say the state disk is full?"""
    said = error.lower()
    return any(word in said for word in ("no space", "enospc", "disk full", "full"))
