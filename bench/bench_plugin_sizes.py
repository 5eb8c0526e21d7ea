"""Managed plugin size and start per kind, beside a peer plugin.

    .venv/bin/python bench/bench_plugin_sizes.py [--kinds block,gce,…] [--rounds 3]

Runs as root, on a private dockerd. For each kind: scripts/build-plugin KIND --no-create
(layers cached under /var/cache/orlop-test/plugin; a cold kind takes minutes), the root
filesystem's size against the 150 MB limit, then `docker plugin create` and `--rounds`
times `docker plugin disable` / `docker plugin enable`: how long the command takes, and
how long until the plugin's socket answers VolumeDriver.List (target: enable ≤ 1 s). A
kind with required settings is enabled without them: it answers every call with what to
set (orlop/managed/start.py), after importing Orlop and its backend as a configured one
does.

The peer is rclone's volume plugin (`rclone serve docker`, Debian's rclone: a static Go
binary) packaged as a managed plugin the same way: its root filesystem is the binary and
what it links, its enable timed the same way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import Connection  # noqa: E402
from bench.peers import call, environment  # noqa: E402
from orlop.managed.kinds import plugin_kind, plugin_kinds  # noqa: E402
from tests.support.dockerd import Dockerd  # noqa: E402
from tests.support.managed_plugin import CACHE, plugin_socket  # noqa: E402

LIMIT_MB = 150
ENABLE_TARGET_S = 1.0


def stage(kind: str, cache: str) -> tuple[Path, str]:
    """One kind's staging directory (root filesystem from the cache when it is there)."""
    args = [str(ROOT / "scripts" / "build-plugin"), kind, "--no-create"]
    result = subprocess.run(
        [*args, "--cache-dir", cache], capture_output=True, text=True, timeout=3600
    )
    if result.returncode != 0:
        raise RuntimeError(f"build-plugin {kind} failed:\n{result.stderr[-3000:]}")
    built = "cached" if "from cache (rootfs-" in result.stderr else "built"
    return Path(result.stdout.strip().splitlines()[-1]), built


def tree_mb(path: Path) -> float:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir()) / 1e6


def answered(path: str, timeout: float = 60) -> float:
    """Seconds until `path` answers VolumeDriver.List (any answer, an error one too)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            conn = Connection(path, timeout=30)
            try:
                call(conn, "List")
            except RuntimeError:
                pass  # an {"Err": …} answer is an answer
            finally:
                conn.close()
            return time.monotonic() - started
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(f"{path} did not answer within {timeout} s")


def enable_rounds(engine: Dockerd, name: str, socket: str, rounds: int) -> tuple[float, float]:
    """Median seconds of `docker plugin enable`, and of enable until List is answered."""
    command, answer = [], []
    for _ in range(rounds):
        engine.run("plugin", "disable", "--force", name, check=False)
        started = time.monotonic()
        engine.run("plugin", "enable", name, timeout=120)
        command.append(time.monotonic() - started)
        answer.append(command[-1] + answered(plugin_socket(engine, name, socket)))
    return statistics.median(command), statistics.median(answer)


def rclone_staging(into: Path) -> Path:
    """rclone's `serve docker` as a managed plugin: the binary, what it links, config.json."""
    binary = shutil.which("rclone")
    if binary is None:
        raise RuntimeError("the peer needs rclone (apt-get install rclone)")
    rootfs = into / "rootfs"
    for directory in ("usr/bin", "run/docker/plugins", "tmp", "etc", "dev", "proc", "sys"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, rootfs / "usr/bin/rclone")
    linked = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    for word in linked.split():
        if word.startswith("/"):
            target = rootfs / word.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(word, target)
    shutil.copy2("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ca-certificates.crt")
    config = {
        "description": "rclone serve docker (bench peer)",
        "entrypoint": ["/usr/bin/rclone", "serve", "docker", "--config", "/tmp/rclone.conf"],
        "interface": {"socket": "rclone.sock", "types": ["docker.volumedriver/1.0"]},
        "network": {"type": "host"},
        "linux": {"capabilities": ["CAP_SYS_ADMIN"], "devices": [{"path": "/dev/fuse"}]},
        "propagatedMount": "/var/lib/docker-plugins/rclone",
        "mounts": [],
        "env": [],
    }
    (rootfs / "var/lib/docker-plugins/rclone").mkdir(parents=True, exist_ok=True)
    (into / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return into


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--kinds", default=",".join(sorted(plugin_kinds())))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", default=CACHE)
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    print(f"# managed plugin sizes and enable times — {environment()}\n")
    engine = Dockerd()
    scratch = Path(tempfile.mkdtemp(prefix="bench-plugin-peer-"))
    rows = []
    try:
        engine.start()
        peer = rclone_staging(scratch)
        engine.run("plugin", "create", "bench/rclone:peer", str(peer), timeout=600)
        peer_mb = tree_mb(peer / "rootfs")
        peer_command, peer_answer = enable_rounds(
            engine, "bench/rclone:peer", "rclone.sock", args.rounds
        )
        engine.run("plugin", "disable", "--force", "bench/rclone:peer", check=False)
        for kind in kinds:
            staged, built = stage(kind, args.cache_dir)
            name = f"bench/{kind}:sizes"
            try:
                megabytes = tree_mb(staged / "rootfs")
                engine.run("plugin", "create", name, str(staged), timeout=900)
            finally:
                shutil.rmtree(staged, ignore_errors=True)
            socket = plugin_kind(kind).socket
            command, answer = enable_rounds(engine, name, socket, args.rounds)
            engine.run("plugin", "disable", "--force", name, check=False)
            engine.run("plugin", "rm", "--force", name, check=False)
            rows.append((kind, megabytes, built, command, answer))
            print(f"  measured {kind}: {megabytes:.0f} MB, enable {command:.2f} s", flush=True)
    finally:
        engine.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nPer kind ({args.rounds} enable rounds, median; limits {LIMIT_MB} MB, "
          f"{ENABLE_TARGET_S:g} s):")  # fmt: skip
    head = (
        f"{'kind':<13} {'rootfs MB':>9} {'vs limit':>8} {'layer':>6} | {'enable s':>8} "
        f"{'→ List s':>8} {'ok':>6} | {'peer MB':>7} {'peer enable s':>13} {'→ List s':>8}"
    )
    print(head)
    print("-" * len(head))
    for kind, megabytes, built, command, answer in rows:
        ok = megabytes <= LIMIT_MB and command <= ENABLE_TARGET_S
        print(
            f"{kind:<13} {megabytes:>9.0f} {megabytes / LIMIT_MB:>7.0%} {built:>6} | "
            f"{command:>8.2f} {answer:>8.2f} {'ok' if ok else 'MISSED':>6} | "
            f"{peer_mb:>7.0f} {peer_command:>13.2f} {peer_answer:>8.2f}"
        )
    print(
        f"{'peer: rclone':<13} {peer_mb:>9.0f} {peer_mb / LIMIT_MB:>7.0%} {'':>6} | "
        f"{peer_command:>8.2f} {peer_answer:>8.2f}"
    )
    print(
        "\nenable s: the `docker plugin enable` command (dockerd waits 0.5 s before it first "
        "dials the socket); → List s: until the socket answers. Peer: rclone serve docker."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
