"""Orlop as a Docker managed plugin vs the same Orlop as a host daemon.

    .venv/bin/python bench/bench_plugin.py [--kinds block,local,…] [--duration 2] [--repeat 3]

Runs as root. Prints four tables, each with its peer measured in the same run:

1. root filesystem size per kind (target ≤ 150 MB), built by scripts/build-plugin
   (cached under /var/cache/orlop-test/plugin: a cold kind takes minutes);
2. `docker plugin enable` until the socket answers VolumeDriver.List (target ≤ 1 s),
   beside `orlop serve` on the host until its socket answers;
3. `docker plugin install` from a local registry (Debian's docker-registry), beside
   `docker plugin create` from the staged directory;
4. the protocol benchmark (Get; Mount+Unmount of block volumes) on the plugin's socket vs
   a host daemon on the plugin's own interpreter and packages (Debian's python3 with the
   plugin's dist-packages), and vs the host daemon on this venv's Python; same load
   generator (bench/loadgen.py), 1 and 4 clients, interleaved; each server's CPU per
   operation and cgroup shown; target: the plugin at least 0.95 of the same-interpreter
   host daemon's throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from bench.loadgen import Connection, Result, post  # noqa: E402
from bench.peers import call, environment  # noqa: E402
from orlop.managed.kinds import plugin_kind, plugin_kinds  # noqa: E402
from tests.servers.registry.server import Registry  # noqa: E402
from tests.support.block import cleanup, has_cap_sys_resource  # noqa: E402
from tests.support.daemon import OrlopDaemon  # noqa: E402
from tests.support.dockerd import Dockerd  # noqa: E402
from tests.support.managed_plugin import CACHE, plugin_id, plugin_socket  # noqa: E402
from tests.support.names import unique  # noqa: E402

SIZE_TARGET_MB = 150
ENABLE_TARGET_S = 1.0
RATIO_TARGET = 0.95
CLIENTS = (1, 4)


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def stage(kind: str) -> tuple[Path, float, bool]:
    """Build (or take from the cache) one kind's root filesystem; its staging dir."""
    args = [str(ROOT / "scripts" / "build-plugin"), kind, "--no-create", "--cache-dir", CACHE]
    args.append("--allow-oversize")  # measured and shown here, not refused
    if not has_cap_sys_resource():
        args += ["--drop-capability", "CAP_SYS_RESOURCE"]
    started = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"build-plugin {kind} failed:\n{result.stderr[-3000:]}")
    cached = "from cache (rootfs-" in result.stderr
    return Path(result.stdout.strip().splitlines()[-1]), time.monotonic() - started, cached


def tree_bytes(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(directory, name)).st_size
    return total


def sizes(kinds: Sequence[str]) -> None:
    print(f"Root filesystem per kind (target ≤ {SIZE_TARGET_MB} MB):")
    print(f"{'kind':<12} {'MB':>6} {'build s':>8}  {'':<6} Debian packages")
    for kind in kinds:
        staged, seconds, cached = stage(kind)
        try:
            megabytes = tree_bytes(staged / "rootfs") / 1e6
        finally:
            subprocess.run(["rm", "-rf", str(staged)], check=False)
        packages = ", ".join(plugin_kind(kind).debian_packages())
        built = "cached" if cached else f"{seconds:.0f}"
        verdict = _verdict(megabytes <= SIZE_TARGET_MB)
        print(f"{kind:<12} {megabytes:>6.0f} {built:>8}  {verdict:<6} {packages}", flush=True)
    print()


def _answers(path: str, timeout: float = 30) -> float:
    """Seconds until `path` answers VolumeDriver.List."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            conn = Connection(path, timeout=5)
            try:
                call(conn, "List")
                return time.monotonic() - started
            finally:
                conn.close()
        except (OSError, RuntimeError):
            time.sleep(0.005)
    raise TimeoutError(f"{path} did not answer within {timeout}s")


def plugin_pid(engine: Dockerd, name: str) -> int:
    """The plugin's Orlop process: the entry point's, in the plugin's cgroup if that says."""
    wanted = plugin_id(engine, name)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"orlop.managed.start" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append((wanted in Path(f"/proc/{pid}/cgroup").read_text(), int(pid)))
        except OSError:
            continue
    if len(found) == 1 or any(mine for mine, _ in found):
        return max(found)[1]
    raise RuntimeError(f"the plugin's process is not the one of {found}")


def enable_times(engine: Dockerd, name: str, host: OrlopDaemon, rounds: int) -> None:
    socket = plugin_socket(engine, name, "block.sock")
    enable_cli, enable_answer, host_answer = [], [], []
    for _ in range(rounds):
        engine.run("plugin", "disable", "--force", name)
        started = time.monotonic()
        process = subprocess.Popen(
            [engine.docker, "plugin", "enable", name], env=engine.env, stdout=subprocess.DEVNULL
        )
        time.sleep(0.05)  # the old socket file lingers until the plugin's start unlinks it
        enable_answer.append(0.05 + _answers(socket))
        process.wait(timeout=120)
        enable_cli.append(time.monotonic() - started)
        host.stop()
        started = time.monotonic()
        host.start()
        host_answer.append(time.monotonic() - started)
    median = statistics.median
    print(
        f"Start until the socket answers ({rounds} rounds, median; target ≤ {ENABLE_TARGET_S} s):"
    )
    print(f"  docker plugin enable → List answered: {median(enable_answer):.3f} s  "
          f"{_verdict(median(enable_answer) <= ENABLE_TARGET_S)}")  # fmt: skip
    print(f"  docker plugin enable, the command:    {median(enable_cli):.3f} s  "
          "(dockerd sleeps 0.5 s before its first probe)")  # fmt: skip
    print(f"  orlop serve on the host → answering:  {median(host_answer):.3f} s  (peer)\n")


def install_times(engine: Dockerd) -> None:
    # A staging of its own: dockerd refuses to create a plugin whose content it holds.
    staged, _, _ = stage("block")
    registry = Registry().start()
    other = Dockerd()
    try:
        remote = f"{registry.address}/orlop/block:bench"
        started = time.monotonic()
        engine.run("plugin", "create", remote, str(staged), timeout=900)
        create = time.monotonic() - started
        started = time.monotonic()
        engine.run("plugin", "push", remote, timeout=900)
        push = time.monotonic() - started
        engine.run("plugin", "rm", remote)
        other.start()
        started = time.monotonic()
        other.run("plugin", "install", "--grant-all-permissions", remote, timeout=900)
        install = time.monotonic() - started
        socket = plugin_socket(other, remote, "block.sock")
        _answers(socket)
        print("Distribution (one run each):")
        print(f"  docker plugin install from 127.0.0.1 registry (pull + enable): {install:.1f} s")
        print(f"  docker plugin create from the staged directory (peer):          {create:.1f} s")
        print(f"  docker plugin push to the registry:                              {push:.1f} s\n")
    finally:
        other.destroy()
        registry.destroy()
        subprocess.run(["rm", "-rf", str(staged)], check=False)


def _scripts(names: Sequence[str]) -> dict[str, list[list[bytes]]]:
    def body(**fields: str) -> bytes:
        return json.dumps(fields).encode()

    return {
        "Get": [[post("/VolumeDriver.Get", body(Name=n))] for n in names],
        "Mount+Unmount": [
            [
                post("/VolumeDriver.Mount", body(Name=n, ID=f"bench-{n}")),
                post("/VolumeDriver.Unmount", body(Name=n, ID=f"bench-{n}")),
            ]
            for n in names
        ],
    }


def _median(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.ops_per_s)[len(results) // 2]


def cgroup_of(pid: int) -> str:
    """The CPU cgroup a process runs in (v2, or v1's cpu controller) with its weight or
    shares and quota, and the CPUs it may use: where a busy host's CPU goes."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "?"
    fields = dict(ln.split(":", 1) for ln in status.splitlines() if ":" in ln)
    cpus = fields.get("Cpus_allowed_list", "?").strip()
    mode = {"0": "off", "1": "strict", "2": "filter"}.get(fields.get("Seccomp", "").strip(), "?")
    groups = dict(line.split(":", 2)[1:] for line in lines if line.count(":") >= 2)
    facts = []
    if "cpu" in groups or any("cpu" in key.split(",") for key in groups):
        key = next(k for k in groups if "cpu" in k.split(","))
        group, base = groups[key], Path("/sys/fs/cgroup") / key
        for name in ("cpu.shares", "cpu.cfs_quota_us"):
            with contextlib.suppress(OSError):
                facts.append(f"{name} {(base / group.lstrip('/') / name).read_text().strip()}")
    else:
        group = groups.get("", "/")
        with contextlib.suppress(OSError):
            weight = (Path("/sys/fs/cgroup") / group.lstrip("/") / "cpu.weight").read_text()
            facts.append(f"cpu.weight {weight.strip()}")
    return f"{group} ({', '.join(facts) or 'no limits read'}; CPUs {cpus}; seccomp {mode})"


def switches(pid: int) -> int:
    """Context switches of a process so far (voluntary + involuntary), all its threads."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[-1])
    return total


def protocol(peers: dict[str, tuple[str, int]], args: argparse.Namespace) -> None:
    """The load generator on each peer's socket in turn, interleaved; the ratio compares the
    plugin with the host daemon on the plugin's own interpreter and packages."""
    names = [f"bench-{i}" for i in range(4)]
    for path, _ in peers.values():
        conn = Connection(path, timeout=120)
        try:
            for name in names:
                call(conn, "Create", Name=name, Opts={"size": "64M"})
                call(conn, "Mount", Name=name, ID="warm")  # formats it: not what is measured
                call(conn, "Unmount", Name=name, ID="warm")
        finally:
            conn.close()
    runs = f"{args.repeat} runs of {args.duration:g} s, median; ratio ≥ {RATIO_TARGET}"
    print(f"Protocol on a block (loopfile) driver, on each peer's socket ({runs}):")
    for label, (_, pid) in peers.items():
        print(f"  {label}: pid {pid}, cgroup {cgroup_of(pid)}")
    labels = list(peers)
    head = f"{'operation':<14} {'cl':>2} | " + " | ".join(
        f"{label[:22]:>22} {'p50 ms':>7} {'µs/op':>6}" for label in labels
    )
    head += f" | {'ratio':>5}"
    print(head)
    print("-" * len(head))
    plugin, same = labels[0], labels[1]
    spent = {label: [0, 0] for label in labels}  # context switches, operations
    for operation, scripts in _scripts(names).items():
        for clients in CLIENTS:
            results: dict[str, list[Result]] = {label: [] for label in peers}
            for _ in range(args.repeat):
                for label, (path, pid) in peers.items():
                    warmup = args.warmup if operation == "Get" else 0.0
                    before = switches(pid)
                    result = loadgen.run(path, scripts, clients, args.duration, warmup, pid)
                    spent[label][0] += switches(pid) - before
                    spent[label][1] += result.ops
                    results[label].append(result)
            medians = {label: _median(results[label]) for label in labels}
            p, h = medians[plugin], medians[same]
            ratio = p.ops_per_s / h.ops_per_s if h.ops_per_s else float("nan")
            cells = []
            for label in labels:
                r = medians[label]
                cpu = f"{r.server_cpu_us:.0f}" if r.server_cpu_us is not None else "-"
                cells.append(f"{r.ops_per_s:>16,.0f} op/s {r.p50_ms:>7.3f} {cpu:>6}")
            print(
                f"{operation:<14} {clients:>2} | " + " | ".join(cells) + f" | {ratio:>5.2f}  "
                f"{_verdict(ratio >= RATIO_TARGET)}",
                flush=True,
            )
    print("server context switches per operation: " + ", ".join(
        f"{label} {cs / max(ops, 1):.2f}" for label, (cs, ops) in spent.items()))  # fmt: skip
    print(
        f"ratio: {plugin} / {same}. µs/op: the server's CPU per operation — equal CPU per "
        "operation with fewer operations per second is time the plugin waited for a CPU "
        "(its cgroup's share), not work it did.\n"
    )


def plugin_python(staged: Path) -> OrlopDaemon:
    """A host daemon on the managed plugin's interpreter and packages: Debian's python3 (the
    plugin's is bookworm's, the same build) with the plugin's dist-packages, run from / so
    that `-m orlop` finds the plugin's copy, not this source tree."""
    found = sorted((staged / "rootfs" / "usr" / "local" / "lib").glob("python3*/dist-packages"))
    if not found:
        raise RuntimeError(f"no dist-packages in the plugin's root filesystem {staged}/rootfs")
    packages = found[-1]
    return OrlopDaemon(
        {unique("bench-deb"): {"backend": "loopfile"}},
        python="/usr/bin/python3",
        env={"PYTHONPATH": str(packages), "PYTHONNOUSERSITE": "1"},
        log_level="info",
        cwd="/",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--kinds", default=",".join(sorted(plugin_kinds())))
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="enable/start rounds")
    parser.add_argument("--skip-sizes", action="store_true")
    args = parser.parse_args(argv)
    print(f"# managed plugin benchmark — {environment()}\n")
    if not args.skip_sizes:
        sizes([k for k in args.kinds.split(",") if k])
    staged, _, _ = stage("block")
    engine = Dockerd()
    host = OrlopDaemon({unique("bench-blk"): {"backend": "loopfile"}}, log_level="info")
    debian = plugin_python(staged)
    name = f"orlop/block:bench{os.getpid()}"
    try:
        engine.start()
        engine.run("plugin", "create", name, str(staged), timeout=900)
        engine.run("plugin", "enable", name, timeout=120)
        host.start()
        enable_times(engine, name, host, args.rounds)
        install_times(engine)
        debian.start()
        peers = {"plugin": (plugin_socket(engine, name, "block.sock"), plugin_pid(engine, name))}
        for label, daemon in (("host, plugin's python", debian), ("host, venv python", host)):
            assert daemon.process is not None
            peers[label] = (daemon.socket(next(iter(daemon.drivers))), daemon.process.pid)
        protocol(peers, args)
    finally:
        for daemon in (host, debian):
            daemon.stop()
            cleanup(str(daemon.root))
            daemon.destroy()
        engine.destroy()
        subprocess.run(["rm", "-rf", str(staged)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
