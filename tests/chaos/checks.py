"""What a chaos run checks after every step, and at its end.

After every step (`invariants`, retried for `SETTLE` seconds: a host asked nothing learns
of a loss at its next discovery pass, 0.5 s here):
  * the cloud shows the volume's disk attached to at most one instance, and there is at most
    one disk of that name;
  * at most one live Orlop reports the volume attached or mounted, and only the holder;
  * a live Orlop keeps no kernel mount of a disk it does not hold; a dead one may (its
    kernel outlives it) until it restarts, but its writer is dead;
  * a running writer runs on the holder, in a mounted mountpoint;
  * nothing is held when nobody uses the volume.
When the volume is unused and detached: `e2fsck -fn` on its disk is clean.
At the end (`leaks`): no mount under the run's root or of a disk's loop device, no disk,
no attachment, no process of the run left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orlop.host.mounts import is_mountpoint
from orlop.host.run import run
from tests.chaos.hosts import SimHost, Writer
from tests.chaos.worlds import World

SETTLE = 5.0


class Violation(AssertionError):
    """An invariant broke: the run stops and prints its seed and step log."""


def settled(check: Callable[[], None], timeout: float = SETTLE) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Violation:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def invariants(
    world: World,
    volume: str,
    hosts: Sequence[SimHost],
    writer_host: SimHost | None,
    writer: Writer | None,
) -> None:
    disks = world.disks(volume)
    if len(disks) > 1:
        raise Violation(f"{len(disks)} disks carry the name {volume}: {[d.id for d in disks]}")
    held = disks[0].holders if disks else []
    if len(held) > 1:
        raise Violation(f"the cloud shows {volume} attached to {held}")
    claiming, mounted = [], []
    for host in hosts:
        if host.mountpoint and is_mountpoint(host.mountpoint):
            mounted.append(host)
        found = host.status(volume)
        if found is None:
            continue
        state = found["Status"]
        if state.get("state") == "attached" or state.get("mounts"):
            claiming.append(host.instance)
    if len(claiming) > 1:
        raise Violation(f"{claiming} all report {volume} attached (cloud: {held})")
    if not set(claiming) <= set(held):
        raise Violation(f"{claiming} report {volume} attached; the cloud shows {held}")
    for host in mounted:
        if host.instance in held:
            continue
        if host.up:
            raise Violation(
                f"{host.name} ({host.instance}) keeps {volume} mounted at {host.mountpoint}; "
                f"the cloud shows it on {held or 'nobody'}"
            )
        if writer_host is host and writer is not None and writer.alive():
            raise Violation(f"a writer still runs on {host.name}, which lost {volume}")
    if writer is not None and writer.alive():
        assert writer_host is not None
        if writer_host.instance not in held or writer_host not in mounted:
            raise Violation(
                f"the writer runs on {writer_host.name}, but the cloud shows {volume} on "
                f"{held or 'nobody'} (mounted there: {writer_host in mounted})"
            )
    owed = any(host.pending for host in hosts)
    if writer_host is None and not owed and (held or claiming or mounted):
        raise Violation(
            f"nobody uses {volume}, yet the cloud shows it on {held}, Orlop on {claiming}, "
            f"the kernel on {[h.name for h in mounted]}"
        )


def mounted_sources() -> set[str]:
    """Every mount's source device (`/proc/self/mountinfo`)."""
    sources = set()
    with open("/proc/self/mountinfo") as table:
        for line in table:
            after = line.split(" - ", 1)[1].split()
            if len(after) > 1:
                sources.add(after[1])
    return sources


def fsck_clean(device: str) -> str | None:
    """None if `e2fsck -fn` finds the detached filesystem clean, else what it said."""
    if device in mounted_sources():
        return None  # a dead host's kernel still has it mounted: not checkable now
    result = run(["e2fsck", "-fn", device], timeout=120, check=False)
    if result.returncode == 0:
        return None
    return f"e2fsck -fn {device} exited {result.returncode}:\n{result.stdout}{result.stderr}"


def mounts_under_root(root: Path, devices: Sequence[str] = ()) -> list[str]:
    """Mounts at or below `root`, or of one of `devices`: "mountpoint (source)"."""
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            source = line.split(" - ", 1)[1].split()[1]
            if fields[4].startswith(str(root)) or source in devices:
                found.append(f"{fields[4]} ({source})")
    return found


def processes_of(root: Path) -> list[str]:
    """Processes (but this one) whose command line names `root`: "pid: command"."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            continue
        if str(root).encode() in cmdline:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
            found.append(f"{pid}: {shown}")
    return found


def leaks(world: World, root: Path, devices: Sequence[str]) -> list[str]:
    """What the run left behind, after every host stopped (empty: nothing)."""
    found = [f"mount {m}" for m in mounts_under_root(root, devices)]
    for disk in world.all_disks():
        found.append(f"disk {disk.id} (attached to {disk.holders or 'nobody'})")
    listing = run(["losetup", "--list", "--noheadings", "-O", "NAME,BACK-FILE"], timeout=30)
    for line in listing.stdout.splitlines():
        if str(root) in line:
            found.append(f"loop device {line.strip()}")
    found += [f"process {p}" for p in processes_of(root)]
    return found
