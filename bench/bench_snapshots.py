#!/usr/bin/env python3
"""Benchmark local snapshots, clones and backups against their peers, in one run.

1. Snapshot and clone of a 10 GiB loopfile volume with 2 GiB written, mounted, with the
   state directory on xfs (reflink=1, a loop device): `orlop snapshot create` (fsfreeze +
   reflink) and a volume created `from_snapshot`, through the daemon's admin API, next to
   `cp --sparse=always` of the same image. Target ≤ 100 ms each.
2. Backup of 1 GiB of files in a directory volume to a local restic repository:
   `orlop backup create` next to `restic backup` run by hand on the same data, each into a
   fresh repository, in pairs of alternating order. Target: Orlop's throughput ≥ 0.95x
   restic's (the median of the pairs' ratios; the ratio of the medians is printed too).
3. A second backup after 10 MiB changed: Orlop and restic by hand. Target ≤ 2 s.

    .venv/bin/python bench/bench_snapshots.py [--runs 5] [--written-gib 2] [--backup-mib 1024]
        [--backup-runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from orlop.cli.client import AdminClient
from tests.support.daemon import OrlopDaemon
from tests.support.hostfs import HostFilesystem
from tests.support.names import unique
from tests.support.snapshot_node import repository_settings

MiB = 1024 * 1024


def clock(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f} ms (n={len(samples)})"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def write_random(path: str, total: int, chunk: int = 64 * MiB) -> None:
    """`total` bytes of random data in files of `chunk` bytes below `path`."""
    block = os.urandom(MiB)
    for index in range(max(1, total // chunk)):
        with open(os.path.join(path, f"file{index:03d}.bin"), "wb") as file:
            for _ in range(min(chunk, total) // MiB):
                file.write(block[:4] + os.urandom(16) + block[20:])  # little dedup inside
            os.fsync(file.fileno())


def drop_cache(path: str) -> None:
    """Evict `path`'s files from the page cache (only theirs): each backup reads from disk."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def snapshot_bench(fs: HostFilesystem, runs: int, written_gib: int) -> list[list[str]]:
    root = os.path.join(fs.path, "orlop")
    os.makedirs(root)
    driver = unique("bench")
    daemon = OrlopDaemon({driver: {"backend": "loopfile", "options": {"size": "10G"}}}, root=root)
    daemon.start()
    try:
        admin = AdminClient(daemon.admin_socket, timeout=600)
        plugin = daemon.client(driver)
        plugin.ok("Create", Name="db", Opts={})
        path = plugin.ok("Mount", Name="db", ID="bench")["Mountpoint"]
        write_random(path, written_gib * 1024 * MiB, 256 * MiB)
        snapshots, clones = [], []
        for run in range(runs):
            snapshots.append(
                clock(lambda r=run: admin.call("snapshots/create", volume="db", snapshot=f"s{r}"))
            )
            clones.append(
                clock(
                    lambda r=run: admin.call(
                        "volumes/create", name=f"c{r}", driver=driver,
                        options={"from_snapshot": f"s{r}"},
                    )
                )
            )  # fmt: skip
        image = os.path.join(daemon.state_dir, "drivers", driver, "images", "db.img")
        copies, reflinks = [], []
        for run in range(min(runs, 2)):
            target = os.path.join(fs.path, f"copy{run}.img")
            copies.append(clock(lambda t=target: subprocess.run(
                ["cp", "--sparse=always", "--reflink=never", image, t], check=True)))  # fmt: skip
            os.unlink(target)
            reflinks.append(clock(lambda t=target: subprocess.run(
                ["cp", "--sparse=always", image, t], check=True)))  # fmt: skip
            os.unlink(target)
        snap, clone, copy = (statistics.median(x) for x in (snapshots, clones, copies))
        return [
            ["orlop snapshot create (mounted: freeze + reflink)", median_ms(snapshots),
             f"{copy / snap:.0f}x faster", verdict(snap <= 0.1)],
            ["orlop volume create from_snapshot (reflink)", median_ms(clones),
             f"{copy / clone:.0f}x faster", verdict(clone <= 0.1)],
            ["cp --sparse=always --reflink=never of the image (peer)", median_ms(copies), "1x",
             ""],
            ["cp --sparse=always (coreutils 9 reflinks by default)", median_ms(reflinks), "", ""],
        ]  # fmt: skip
    finally:
        daemon.destroy()


def restic(repository: str, password: str, *args: str, cwd: str | None = None) -> None:
    env = {**os.environ, "RESTIC_REPOSITORY": repository, "RESTIC_PASSWORD_FILE": password}
    env["RESTIC_CACHE_DIR"] = os.path.join(os.path.dirname(repository), "cache-by-hand")
    subprocess.run(["restic", "-q", *args], check=True, env=env, cwd=cwd, capture_output=True)


def fresh_repository(location: str, password: str) -> None:
    """An empty, initialised repository at `location` (init is not part of a backup)."""
    subprocess.run(["rm", "-rf", location], check=True)
    restic(location, password, "init")


def backup_bench(fs: HostFilesystem, backup_mib: int, runs: int) -> list[list[str]]:
    """`runs` pairs of first backups into fresh repositories, Orlop and restic by hand in
    alternating order (a busy machine's load changes between two measurements), medians;
    then one second backup each after 10 MiB changed."""
    root = os.path.join(fs.path, "orlop-backup")
    os.makedirs(root)
    driver = unique("bench")
    settings = repository_settings(root)
    password = settings["backup_password_file"]
    daemon = OrlopDaemon({driver: {"backend": "directory", "settings": settings}}, root=root)
    daemon.start()
    try:
        admin = AdminClient(daemon.admin_socket, timeout=3600)
        plugin = daemon.client(driver)
        plugin.ok("Create", Name="data", Opts={})
        path = plugin.ok("Mount", Name="data", ID="bench")["Mountpoint"]
        write_random(path, backup_mib * MiB)
        subprocess.run(["sync"], check=True)
        by_hand = os.path.join(root, "by-hand")

        def hand() -> float:
            drop_cache(path)
            return clock(lambda: restic(by_hand, password, "backup", ".", cwd=path))

        def orlop() -> float:
            drop_cache(path)
            return clock(lambda: admin.call("backups/create", volume="data"))

        hand_times: list[float] = []
        orlop_times: list[float] = []
        for run in range(runs):
            fresh_repository(settings["backup_repository"], password)
            fresh_repository(by_hand, password)
            if run % 2 == 0:
                hand_times.append(hand())
                orlop_times.append(orlop())
            else:
                orlop_times.append(orlop())
                hand_times.append(hand())
        with open(os.path.join(path, "changed.bin"), "wb") as file:
            file.write(os.urandom(10 * MiB))
            os.fsync(file.fileno())
        hand_second = hand()
        orlop_second = orlop()
        orlop_first = statistics.median(orlop_times)
        hand_first = statistics.median(hand_times)
        # The verdict: the median of the pairs' ratios. Each pair runs back to back, so a
        # change of the machine's load between pairs cancels out; the ratio of the two
        # medians is printed beside it.
        ratios = [h / o for h, o in zip(hand_times, orlop_times, strict=True)]
        ratio = statistics.median(ratios)
        rate = backup_mib / orlop_first
        pairs = " / ".join(f"{r:.2f}" for r in ratios)
        pairs += f"; ratio of the medians {hand_first / orlop_first:.2f}"
        return [
            [f"orlop backup create, {backup_mib} MiB (median of {runs})",
             f"{orlop_first:.2f} s ({rate:.0f} MiB/s)", f"{ratio:.2f}x restic (pairs)",
             verdict(ratio >= 0.95)],
            [f"restic backup by hand, {backup_mib} MiB (peer, median of {runs})",
             f"{hand_first:.2f} s", "1x", ""],
            [f"  each pair, restic/orlop: {pairs}", "", "", ""],
            ["orlop backup create, 10 MiB changed", f"{orlop_second:.2f} s", "",
             verdict(orlop_second <= 2.0)],
            ["restic backup by hand, 10 MiB changed (peer)", f"{hand_second:.2f} s", "", ""],
        ]  # fmt: skip
    finally:
        daemon.destroy()


def table(rows: list[list[str]]) -> str:
    header = ["what", "time", "vs peer", "target"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--written-gib", type=int, default=2)
    parser.add_argument("--backup-mib", type=int, default=1024)
    parser.add_argument("--backup-runs", type=int, default=5, help="pairs of first backups")
    args = parser.parse_args()
    tempfile.tempdir = "/var/tmp"  # the xfs image is sparse, but may hold a few GiB
    fs = HostFilesystem("xfs", size=(args.written_gib * 3 + 12) * 1024**3)
    try:
        rows = snapshot_bench(fs, args.runs, args.written_gib)
        rows += backup_bench(fs, args.backup_mib, args.backup_runs)
    finally:
        fs.destroy()
    print(table(rows))


if __name__ == "__main__":
    main()
