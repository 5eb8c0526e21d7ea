"""Docker volume plugin protocol throughput and latency: Orlop vs `rclone serve docker`.

    .venv/bin/python bench/bench_protocol.py [--duration 2] [--repeat 3]

Runs as root (rclone's Mount is a FUSE mount). Prints the generator's ceiling against a
trivial server, then one table: Get, Path, List (1 and 1,000 volumes) and a Mount+Unmount
pair, with 1 and 4 concurrent clients, both servers measured in the same run, interleaved.
Targets (issue 2): Get and Path at least rclone's throughput; List of 1,000 volumes
at most 5 ms at p50.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.loadgen import Result, post
from bench.peers import Orlop, Peer, Rclone, environment

CLIENTS = (1, 4)
VOLUMES = 1000
LIST_P50_TARGET_MS = 5.0


def _name(i: int) -> str:
    return f"bench-{i:04d}"


def _body(**fields: str) -> bytes:
    return json.dumps(fields).encode()


Scripts = list[list[bytes]]
SCENARIOS: dict[str, Callable[[], Scripts]] = {
    # Client i works on volume i, so 4 clients never queue on one volume's lock.
    "Get": lambda: [[post("/VolumeDriver.Get", _body(Name=_name(i)))] for i in range(4)],
    "Path": lambda: [[post("/VolumeDriver.Path", _body(Name=_name(i)))] for i in range(4)],
    "List": lambda: [[post("/VolumeDriver.List", b"{}")]],
    "Mount+Unmount": lambda: [
        [
            post("/VolumeDriver.Mount", _body(Name=_name(i), ID=f"bench-mount-{i}")),
            post("/VolumeDriver.Unmount", _body(Name=_name(i), ID=f"bench-mount-{i}")),
        ]
        for i in range(4)
    ],
}


def _check(peer: Peer, scripts: Scripts, volumes: int) -> None:
    """Every request of the scenario succeeds once before it is timed; List lists them all."""
    conn = loadgen.Connection(peer.socket, timeout=loadgen.REQUEST_TIMEOUT)
    try:
        for script in scripts:
            for request in script:
                status, raw = conn.call(request, body=True)
                answer = json.loads(raw) if raw else {}
                if status != b"200" or answer.get("Err"):
                    raise RuntimeError(f"{peer.label}: {request[:60]!r} → {status!r} {raw[:200]!r}")
                listed = len(answer.get("Volumes") or ())
                if b"/VolumeDriver.List" in request and listed != volumes:
                    raise RuntimeError(f"{peer.label}: List shows {listed} of {volumes} volumes")
    finally:
        conn.close()


def _measure(
    peer: Peer, scripts: Scripts, clients: int, warmup: float, args: argparse.Namespace
) -> Result:
    return loadgen.run(peer.socket, scripts, clients, args.duration, warmup, peer.pid)


def _median(results: Sequence[Result]) -> Result:
    ordered = sorted(results, key=lambda r: r.ops_per_s)
    middle = ordered[len(ordered) // 2]
    if any(r.hung for r in results):
        middle.hung = True  # shown: the server hung in at least one run
    return middle


Row = tuple[str, int, Result, Result]


def _run_phase(
    peers: Sequence[Peer],
    ops: Sequence[tuple[str, str]],
    volumes: int,
    args: argparse.Namespace,
) -> list[Row]:
    rows = []
    for label, scenario in ops:
        scripts = SCENARIOS[scenario]()
        # rclone hangs within tens of quick Mount+Unmount pairs: no warm-up for those, so
        # its figure is measured before the hang (marked *) rather than not at all.
        warmup = 0.0 if scenario == "Mount+Unmount" else args.warmup
        for peer in peers:
            _check(peer, scripts, volumes)
        for clients in CLIENTS:
            runs: dict[str, list[Result]] = {peer.label: [] for peer in peers}
            for _ in range(args.repeat):  # interleaved, so drift in load hits both alike
                for peer in peers:
                    result = _measure(peer, scripts, clients, warmup, args)
                    runs[peer.label].append(result)
                    if result.hung:
                        print(f"  {peer.label} hung: restarting it", file=sys.stderr)
                        peer.reset([_name(i) for i in range(volumes)])
            a, b = (_median(runs[peer.label]) for peer in peers)
            rows.append((label, clients, a, b))
            print(f"  measured {label} x{clients}", file=sys.stderr, flush=True)
    return rows


def _fmt_ops(result: Result) -> str:
    if result.hung and not result.ops:
        return "hung*"
    return f"{result.ops_per_s:,.0f}" + ("*" if result.hung else "")


def _fmt_cpu(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def print_table(rows: Sequence[Row]) -> None:
    head = (
        f"{'operation':<20} {'cl':>2} | {'orlop op/s':>10} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'rclone op/s':>11} {'p50 ms':>7} {'p99 ms':>7} | {'o/r':>5} | "
        f"{'srv µs/op o':>11} {'r':>6} | {'gen µs/op':>9}"
    )
    print(head)
    print("-" * len(head))
    for label, clients, o, r in rows:
        ratio = o.ops_per_s / r.ops_per_s if r.ops else float("nan")
        errors = "" if not (o.errors or r.errors) else f"  errors: {o.errors}/{r.errors}"
        print(
            f"{label:<20} {clients:>2} | {_fmt_ops(o):>10} {o.p50_ms:>7.3f} {o.p99_ms:>7.3f} | "
            f"{_fmt_ops(r):>11} {r.p50_ms:>7.3f} {r.p99_ms:>7.3f} | {ratio:>5.2f} | "
            f"{_fmt_cpu(o.server_cpu_us):>11} {_fmt_cpu(r.server_cpu_us):>6} | "
            f"{max(o.client_cpu_us, r.client_cpu_us):>9.1f}{errors}"
        )


def ceiling(args: argparse.Namespace) -> list[tuple[int, Result]]:
    body = json.dumps(
        {
            "Volume": {
                "Name": _name(0),
                "Mountpoint": "/var/lib/orlop/volumes/bench-0000/_data",
                "CreatedAt": "2026-01-01T00:00:00Z",
                "Status": {},
            },
            "Err": "",
        }
    ).encode()
    results = []
    with loadgen.trivial_server(body) as (path, pid):
        scripts = [[post("/VolumeDriver.Get", _body(Name=_name(0)))]]
        for clients in CLIENTS:
            results.append((clients, loadgen.run(path, scripts, clients, args.duration, 0.3, pid)))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each one")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; median shown")
    args = parser.parse_args(argv)

    print(f"# protocol benchmark — {environment()}")
    print(f"# {args.repeat} runs of {args.duration:g}s per cell, median by throughput\n")
    print("Load generator ceiling (trivial server: a process per connection, canned answer):")
    for clients, result in ceiling(args):
        print(
            f"  {clients} client{'s' if clients > 1 else ' '}: {result.ops_per_s:>9,.0f} op/s  "
            f"p50 {result.p50_ms:.3f} ms  generator {result.client_cpu_us:.1f} µs CPU/op, "
            f"trivial server {_fmt_cpu(result.server_cpu_us)} µs CPU/op"
        )
    print()

    orlop, rclone = Orlop(), Rclone()
    peers: list[Peer] = []
    try:
        peers = [orlop.start(), rclone.start()]
        for peer in peers:
            peer.create([_name(0)])
        rows = _run_phase(peers, [("List (1 volume)", "List")], 1, args)
        for peer in peers:
            peer.create([_name(i) for i in range(1, VOLUMES)])
        rows += _run_phase(
            peers,
            [
                ("Get", "Get"),
                ("Path", "Path"),
                (f"List ({VOLUMES:,} volumes)", "List"),
                ("Mount+Unmount", "Mount+Unmount"),
            ],
            VOLUMES,
            args,
        )
        rss = {peer.label: peer.rss_mb() for peer in peers}
    finally:
        orlop.destroy()
        rclone.destroy()

    print("Orlop vs rclone serve docker (o/r = throughput ratio; srv/gen = CPU per op):")
    print_table(rows)
    if any(o.hung or r.hung for _, _, o, r in rows):
        print(
            f"* the server hung in at least one run (a request unanswered for "
            f"{loadgen.REQUEST_TIMEOUT:g}s); op/s until then; it was restarted with fresh state"
        )
    print(
        f"\nresident memory after the run: orlop {rss['orlop']:.0f} MB, "
        f"rclone {rss['rclone']:.0f} MB"
    )
    print("\nTargets:")
    verdicts = []
    for label, clients, o, r in rows:
        if label in ("Get", "Path"):
            ok = o.ops_per_s >= r.ops_per_s
            verdicts.append(ok)
            print(
                f"  {label:<5} x{clients}: orlop {o.ops_per_s:,.0f} ≥ rclone {r.ops_per_s:,.0f} "
                f"op/s: {'met' if ok else 'MISSED'}"
            )
        elif label.startswith(f"List ({VOLUMES:,}"):
            ok = o.p50_ms <= LIST_P50_TARGET_MS
            verdicts.append(ok)
            print(
                f"  List of {VOLUMES:,} x{clients}: p50 {o.p50_ms:.3f} ms ≤ "
                f"{LIST_P50_TARGET_MS:g} ms: {'met' if ok else 'MISSED'}"
            )
    print(f"  {'all targets met' if all(verdicts) else 'SOME TARGETS MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
