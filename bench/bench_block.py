#!/usr/bin/env python3
"""Benchmark block volumes against their peers, in one run, side by side.

1. Sequential write and read of 1 GiB with direct I/O (`dd oflag=direct` / `iflag=direct`)
   inside a container: Orlop loop-file volumes vs a Docker `local` volume on the same disk.
   Target: ≥ 0.9x the local volume.
2. First mount of a 10G volume, format included (Docker's Mount call on the plugin socket):
   ext4 and xfs, next to the same steps done by hand (losetup, mkfs, mount). Target ≤ 1 s.

Runs its own private dockerd and orlop daemon (root needed):

    .venv/bin/python bench/bench_block.py [--runs 3] [--mib 1024]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.block import cleanup
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import Dockerd
from tests.support.names import unique

PLUGIN_DIR = "/run/docker/plugins"
# busybox dd does not print its timing: the container reads the clock (/proc/uptime, 10 ms)
# around dd, so `docker exec` overhead is not counted.
TIMED = 'a=$(cat /proc/uptime); {command} 2>/dev/null; b=$(cat /proc/uptime); echo "$a|$b"'


def timed(dockerd: Dockerd, container: str, command: str) -> float:
    output = dockerd.run(
        "exec", container, "sh", "-c", TIMED.format(command=command), timeout=900
    ).stdout
    start, _, end = output.strip().partition("|")
    return float(end.split()[0]) - float(start.split()[0])


def io_benchmark(dockerd: Dockerd, driver: str, runs: int, mib: int) -> list[list[str]]:
    image = dockerd.ensure_image()
    volumes = [
        ("docker local (peer)", "local", []),
        ("orlop ext4, sparse image", driver, ["fs=ext4"]),
        ("orlop ext4, preallocated", driver, ["fs=ext4", "preallocate=true"]),
        ("orlop xfs, sparse image", driver, ["fs=xfs"]),
    ]
    containers: dict[str, str] = {}
    names: list[str] = []
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for label, volume_driver, options in volumes:
            name = unique("bench")
            names.append(name)
            flags = [word for option in options for word in ("--opt", option)]
            dockerd.run("volume", "create", "-d", volume_driver, *flags, name)
            containers[label] = dockerd.run(
                "run", "-d", "-v", f"{name}:/data", image, "sleep", "3600"
            ).stdout.strip()
            results[label] = {"write": [], "read": []}
        # Round robin, so a busy neighbour on the shared host hurts every volume alike.
        for _ in range(runs):
            for label, container in containers.items():
                dockerd.run("exec", container, "sh", "-c", "rm -f /data/f && sync")
                write = timed(
                    dockerd, container, f"dd if=/dev/zero of=/data/f bs=1M count={mib} oflag=direct"
                )
                size = int(dockerd.run("exec", container, "stat", "-c", "%s", "/data/f").stdout)
                assert size == mib * 1024 * 1024, f"{label}: wrote {size} bytes"
                read = timed(dockerd, container, "dd if=/data/f of=/dev/null bs=1M iflag=direct")
                results[label]["write"].append(size / write / 1e6)
                results[label]["read"].append(size / read / 1e6)
    finally:
        if containers:
            dockerd.run("rm", "-f", *containers.values(), check=False)
        for name in names:
            dockerd.run("volume", "rm", name, check=False)
    peer = results[volumes[0][0]]
    rows = []
    for label, _, _ in volumes:
        write = statistics.median(results[label]["write"])
        read = statistics.median(results[label]["read"])
        rows.append(
            [
                label,
                _with_spread(write, results[label]["write"]),
                _with_spread(read, results[label]["read"]),
                f"{write / statistics.median(peer['write']):.2f}x",
                f"{read / statistics.median(peer['read']):.2f}x",
            ]
        )
    return rows


def _with_spread(median: float, samples: list[float]) -> str:
    return f"{median:.0f} ({min(samples):.0f}-{max(samples):.0f})"


def first_mount_orlop(daemon: OrlopDaemon, fs: str) -> float:
    client = daemon.client()
    name = unique("first")
    try:
        client.ok("Create", Name=name, Opts={"size": "10G", "fs": fs})
        started = time.monotonic()
        client.ok("Mount", Name=name, ID="bench")
        elapsed = time.monotonic() - started
        client.ok("Unmount", Name=name, ID="bench")
        client.ok("Remove", Name=name)
        return elapsed
    finally:
        client.close()


def first_mount_by_hand(fs: str) -> float:
    directory = tempfile.mkdtemp(prefix="orlop-bench-", dir="/var/tmp")
    image, target = os.path.join(directory, "img"), os.path.join(directory, "mnt")
    os.mkdir(target)
    with open(image, "wb") as file:
        file.truncate(10 * 1024**3)
    device = ""
    try:
        started = time.monotonic()
        device = subprocess.run(
            ["losetup", "--find", "--show", "--direct-io=on", image],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        subprocess.run([f"mkfs.{fs}", "-q", device], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "nodev,nosuid", device, target], check=True)
        elapsed = time.monotonic() - started
        return elapsed
    finally:
        subprocess.run(["umount", target], check=False, capture_output=True)
        if device:
            subprocess.run(["losetup", "-d", device], check=False)
        os.unlink(image)
        os.rmdir(target)
        os.rmdir(directory)


def mount_benchmark(daemon: OrlopDaemon, runs: int) -> list[list[str]]:
    rows = []
    for fs in ("ext4", "xfs"):
        orlop = statistics.median(first_mount_orlop(daemon, fs) for _ in range(runs))
        by_hand = statistics.median(first_mount_by_hand(fs) for _ in range(runs))
        verdict = "ok" if orlop <= 1.0 else "MISSED"
        rows.append([fs, f"{orlop:.3f}", f"{by_hand:.3f}", f"≤ 1 s: {verdict}"])
    return rows


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions (median is shown)")
    parser.add_argument("--mib", type=int, default=1024, help="MiB written and read per run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_block.py needs root (dockerd, loop devices, mounts)")
    driver = unique("bench-blk")
    dockerd = Dockerd()
    daemon = OrlopDaemon(
        {driver: {"backend": "loopfile", "options": {"size": f"{2 * args.mib}M"}}},
        plugin_dir=PLUGIN_DIR,
    )
    try:
        dockerd.start()
        daemon.start()
        io_rows = io_benchmark(dockerd, driver, args.runs, args.mib)
        mount_rows = mount_benchmark(daemon, args.runs)
    finally:
        with contextlib.suppress(Exception):
            daemon.stop()
        cleanup(str(daemon.root))
        daemon.destroy()
        dockerd.destroy()
    print()
    print(f"host: {os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.2f} (shared host)")
    print()
    print(
        table(
            f"Sequential direct I/O of {args.mib} MiB in a container, MB/s "
            f"(median of {args.runs}; target ≥ 0.90x docker local)",
            ["volume", "write (min-max)", "read (min-max)", "write xlocal", "read xlocal"],
            io_rows,
        )
    )
    print()
    print(
        table(
            f"First mount of a 10G volume, format included, seconds (median of {args.runs})",
            ["fs", "orlop Mount", "by hand (losetup+mkfs+mount)", "target"],
            mount_rows,
        )
    )


if __name__ == "__main__":
    main()
