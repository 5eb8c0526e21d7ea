"""Scale: an Orlop daemon holding 10,000 volumes, next to Docker's `local` driver with as many.

    .venv/bin/python bench/bench_scale.py [--volumes 10000] [--restarts 3] [--ls-runs 5]

Runs as root. Steps:
1. `orlop serve` (directory driver, socket under a unique name in /run/docker/plugins)
   gets its volumes straight through its plugin socket (Create, 4 connections at once).
2. The daemon is stopped (SIGTERM) and started again `--restarts` times; each start is
   timed from spawning the process until both the driver socket and the admin socket
   answer an HTTP request; then until List shows every volume. Resident memory (VmRSS) is
   read once List answers, and again after the `docker volume ls` runs.
3. A private dockerd (tests/support/dockerd.py) gets as many `local` volumes through its
   API socket. `docker volume ls --filter driver=<d>` is timed for Orlop's driver and for
   `local`, interleaved. The filter makes dockerd ask that one driver only, so plugin
   sockets of other daemons in /run/docker/plugins do not enter either figure.
Targets (issue 2): start ≤ 2 s, resident memory ≤ 100 MB, `docker volume ls` ≤ 1.2x local.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import Connection, post
from bench.peers import Orlop, call, environment
from tests.support.dockerd import Dockerd
from tests.support.names import unique

PLUGIN_DIR = "/run/docker/plugins"
START_TARGET_S = 2.0
RSS_TARGET_MB = 100.0
LS_TARGET = 1.2


def _name(i: int, driver: str) -> str:
    # Volume names are global in Docker: each driver gets its own.
    return f"scale-{driver}-{i:05d}"


def _in_parallel(count: int, connections: int, work: object) -> None:
    """Run work(conn, indexes) on `connections` threads over range(count)."""
    errors: list[BaseException] = []

    def run(part: range) -> None:
        try:
            work(part)  # type: ignore[operator]
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(range(i, count, connections),))
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def populate_orlop(orlop: Orlop, count: int) -> float:
    def work(part: range) -> None:
        conn = Connection(orlop.socket, timeout=60)
        try:
            for i in part:
                call(conn, "Create", Name=_name(i, "orlop"), Opts={})
        finally:
            conn.close()

    start = time.perf_counter()
    _in_parallel(count, 4, work)
    return time.perf_counter() - start


def populate_local(dockerd: Dockerd, count: int) -> float:
    def work(part: range) -> None:
        conn = Connection(dockerd.socket, timeout=60)
        try:
            for i in part:
                body = json.dumps({"Name": _name(i, "local"), "Driver": "local"}).encode()
                request = post("/volumes/create", body, "application/json")
                status, raw = conn.call(request, body=True)
                if status != b"201":
                    raise RuntimeError(f"docker volume create failed: {status!r} {raw!r}")
        finally:
            conn.close()

    start = time.perf_counter()
    _in_parallel(count, 4, work)
    return time.perf_counter() - start


def _answers(path: str, request: bytes) -> bool:
    try:
        conn = Connection(path, timeout=5)
    except OSError:
        return False
    try:
        status, _ = conn.call(request)
        return status == b"200"
    except OSError:
        return False
    finally:
        conn.close()


def timed_start(orlop: Orlop, count: int) -> tuple[float, float]:
    """Start the daemon; seconds until both sockets answer, and until List shows all."""
    daemon = orlop.daemon
    began = time.perf_counter()
    daemon.start(wait=False)
    assert daemon.process is not None
    orlop.pid = daemon.process.pid
    activate = post("/Plugin.Activate", b"{}")
    version = post("/v1/version", b"{}")
    waiting = {orlop.socket: activate, daemon.admin_socket: version}
    while waiting:
        if daemon.process.poll() is not None:
            raise RuntimeError(f"orlop exited at start:\n{daemon.log()[-3000:]}")
        for path, request in list(waiting.items()):
            if _answers(path, request):
                del waiting[path]
        if waiting:
            time.sleep(0.005)
    answered = time.perf_counter() - began
    conn = Connection(orlop.socket, timeout=60)
    try:
        listed = len(call(conn, "List")["Volumes"])
    finally:
        conn.close()
    if listed != count:
        raise RuntimeError(f"List shows {listed} of {count} volumes after a restart")
    return answered, time.perf_counter() - began


def time_ls(dockerd: Dockerd, driver: str, count: int) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [dockerd.docker, "volume", "ls", "--filter", f"driver={driver}"],
        capture_output=True,
        text=True,
        env=dockerd.env,
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"docker volume ls failed: {result.stderr}")
    listed = sum(1 for line in result.stdout.splitlines()[1:] if "scale-" in line)
    if listed != count:
        raise RuntimeError(f"docker volume ls shows {listed} of {count} {driver} volumes")
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=10_000)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--ls-runs", type=int, default=5)
    args = parser.parse_args(argv)
    count = args.volumes

    orlop = Orlop(plugin_dir=PLUGIN_DIR, driver=unique("orlop-bench"))
    dockerd = Dockerd()
    starts: list[tuple[float, float]] = []
    ls: dict[str, list[float]] = {"orlop": [], "local": []}
    try:
        orlop.start()
        fill_orlop = populate_orlop(orlop, count)
        for _ in range(args.restarts):
            orlop.stop()
            starts.append(timed_start(orlop, count))
        rss_started = orlop.rss_mb()
        dockerd.start()
        fill_local = populate_local(dockerd, count)
        # dockerd finds plugins when a plain ls asks every driver; a filtered one only asks
        # drivers it already knows.
        dockerd.run("volume", "ls", "-q", timeout=300)
        for driver in (orlop.driver, "local"):
            time_ls(dockerd, driver, count)  # warm both
        for _ in range(args.ls_runs):
            ls["orlop"].append(time_ls(dockerd, orlop.driver, count))
            ls["local"].append(time_ls(dockerd, "local", count))
        rss_after = orlop.rss_mb()
    finally:
        orlop.destroy()
        dockerd.destroy()

    print(f"# scale benchmark — {environment()}")
    print(
        f"# {count:,} volumes; filled through the plugin socket in {fill_orlop:.1f}s (orlop), "
        f"through dockerd's API in {fill_local:.1f}s (local)\n"
    )
    answer_times = [a for a, _ in starts]
    list_times = [b for _, b in starts]
    ls_o, ls_l = statistics.median(ls["orlop"]), statistics.median(ls["local"])
    rows = [
        (
            "start: sockets answer",
            " / ".join(f"{t:.2f}s" for t in answer_times),
            f"≤ {START_TARGET_S:g}s",
            max(answer_times) <= START_TARGET_S,
        ),
        (
            "start: List shows all",
            " / ".join(f"{t:.2f}s" for t in list_times),
            "",
            None,
        ),
        (
            "resident memory",
            f"{rss_started:.0f} MB started, {rss_after:.0f} MB after ls",
            f"≤ {RSS_TARGET_MB:g} MB",
            max(rss_started, rss_after) <= RSS_TARGET_MB,
        ),
        (
            "docker volume ls",
            f"orlop {ls_o * 1e3:.0f} ms vs local {ls_l * 1e3:.0f} ms = {ls_o / ls_l:.2f}x",
            f"≤ {LS_TARGET:g}x",
            ls_o / ls_l <= LS_TARGET,
        ),
    ]
    head = f"{'measure':<22} | {'measured':<46} | {'target':<9} | verdict"
    print(head)
    print("-" * len(head))
    for label, value, target, ok in rows:
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{label:<22} | {value:<46} | {target:<9} | {verdict}")
    print(
        f"\ndocker volume ls, every run (ms): orlop "
        f"{', '.join(f'{t * 1e3:.0f}' for t in ls['orlop'])}; local "
        f"{', '.join(f'{t * 1e3:.0f}' for t in ls['local'])} (median shown above)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
