"""Activate with the backend unreachable: per driver kind, how soon `orlop serve` answers
Docker's `Plugin.Activate`, and how soon `orlop status` says the backend is down.

    .venv/bin/python bench/bench_activate.py [--kinds directory,ebs,digitalocean,powerscale]
                                             [--repeat 3] [--endpoint refused|silent|both]
                                             [--down-timeout 60]

For each kind a fresh daemon is started whose backend endpoint (the EC2 endpoint, the
DigitalOcean API and metadata URLs, the PowerScale cluster URL) is a loopback port that
`refused`: nothing listens (connection refused, as when the network is not up), or
`silent`: accepts connections and never answers (a hung endpoint, a black-holed route).
The clock starts at the process' spawn. "Activate" is the time until the driver socket
answers `POST /Plugin.Activate` (dockerd's first call; it waits 0.5 s, then every 3 s);
"down" is the time until the admin API's `status` (what `orlop status` prints) says the
driver's backend is not reachable: the first discovery pass at start (every global kind
lists its volumes) meets the endpoint, each failed provider attempt says so. The directory
kind is the peer: it has no remote backend (never "down"), so its Activate is the floor
any kind could reach. Target (issue 20): Activate within dockerd's wait, with any backend
unreachable: ≤ 1 s, and no slower than directory by more than the kind's own imports.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orlop.cli.client import AdminClient
from orlop.core.model import OrlopError
from tests.servers.sshd.server import silent_listener
from tests.support.daemon import OrlopDaemon
from tests.support.late import reserve_port

KINDS = ("directory", "ebs", "digitalocean", "powerscale")
MORE = ("gce", "cinder", "vsphere", "powerflex")  # `--kinds all` adds these
PASSWORD = Path(tempfile.gettempdir()) / f"orlop-bench-activate-{os.getpid()}.secret"
ACTIVATE_TARGET = 1.0
ACTIVATE = b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\nContent-Length: 2\r\n\r\n{}"


def config(kind: str, port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    if kind == "directory":
        return {"backend": "directory"}
    if kind == "ebs":
        settings = {
            "access_key_id": "bench",
            "secret_access_key": "bench",
            "region": "us-east-1",
            "endpoint_url": url,
            "instance_id": "i-0123456789abcdef0",
            "availability_zone": "us-east-1a",
        }
        return {"backend": "ebs", "settings": settings}
    if kind == "digitalocean":
        settings = {
            "token": "bench",
            "region": "nyc1",
            "droplet_id": 1,
            "api_url": url,
            "metadata_url": url,
        }
        return {"backend": "digitalocean", "settings": settings}
    if kind == "powerscale":
        settings = {
            "url": f"https://127.0.0.1:{port}",
            "username": "bench",
            "password": "bench",
            "verify": False,
        }
        return {"backend": "powerscale", "settings": settings}
    if kind == "gce":
        settings = {
            "project": "bench",
            "zone": "us-central1-a",
            "instance": "bench-1",
            "endpoint_url": url,
            "metadata_url": url,
        }
        return {"backend": "gce", "settings": settings}
    if kind == "cinder":
        settings = {
            "auth_url": f"{url}/v3",
            "username": "bench",
            "password_file": str(PASSWORD),
            "project_id": "bench",
            "region": "RegionOne",
            "instance_id": "00000000-0000-0000-0000-000000000001",
            "metadata_url": url,
        }
        return {"backend": "cinder", "settings": settings}
    if kind == "vsphere":
        settings = {
            "url": f"https://127.0.0.1:{port}/sdk",
            "username": "bench",
            "password_file": str(PASSWORD),
            "verify": False,
            "datastore": "bench",
            "vm_name": "bench",
        }
        return {"backend": "vsphere", "settings": settings}
    if kind == "powerflex":
        settings = {
            "gateway": f"https://127.0.0.1:{port}",
            "username": "bench",
            "password_file": str(PASSWORD),
            "verify": False,
            "sdc_guid": "00000000-0000-0000-0000-000000000001",
        }
        return {"backend": "powerflex", "settings": settings}
    raise SystemExit(f"unknown kind {kind!r}: known are {', '.join(KINDS + MORE)}")


@contextlib.contextmanager
def endpoint(mode: str) -> Iterator[int]:
    """A loopback port that refuses connections, or one that accepts and never answers."""
    if mode == "refused":
        yield reserve_port()
        return
    with silent_listener() as port:
        yield port


def activate(path: str, deadline: float) -> bool:
    """One Activate on the driver socket: True when it answered (not yet listening: False)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        probe.connect(path)
        probe.sendall(ACTIVATE)
        return b"VolumeDriver" in probe.recv(4096)
    except OSError:
        return False
    finally:
        probe.close()


def backend_down(admin: str) -> bool:
    try:
        status = AdminClient(admin, timeout=5).call("status")
    except OrlopError:
        return False
    return any(d["backend_reachable"] is False for d in status["drivers"])


def measure(kind: str, mode: str, down_timeout: float) -> tuple[float, float | None]:
    """(seconds to Activate, seconds until status says down or None) for one fresh daemon."""
    with endpoint(mode) as port:
        daemon = OrlopDaemon({f"bench-{kind}": config(kind, port)}, log_level="info")
        try:
            started = time.monotonic()
            daemon.start(wait=False)
            path = daemon.socket(f"bench-{kind}")
            while not activate(path, started + 60):
                if time.monotonic() > started + 60 or daemon.process is None:
                    raise SystemExit(f"{kind}: no Activate answer within 60 s")
                if daemon.process.poll() is not None:
                    raise SystemExit(f"{kind}: daemon exited:\n{daemon.log_path.read_text()}")
                time.sleep(0.005)
            activated = time.monotonic() - started
            if kind == "directory":
                return activated, None
            while time.monotonic() < started + down_timeout:
                if backend_down(daemon.admin_socket):
                    return activated, time.monotonic() - started
                time.sleep(0.05)
            return activated, None
        finally:
            daemon.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help="a list, or `all`")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--endpoint", choices=("refused", "silent", "both"), default="both")
    parser.add_argument("--down-timeout", type=float, default=60.0)
    args = parser.parse_args()
    kinds = list(KINDS + MORE) if args.kinds == "all" else [k for k in args.kinds.split(",") if k]
    PASSWORD.write_text("bench\n")
    PASSWORD.chmod(0o600)
    modes = ("refused", "silent") if args.endpoint == "both" else (args.endpoint,)
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"# Activate and `orlop status` down, backend endpoint unreachable; median of "
        f"{args.repeat}; {cores} cores, load {load}"
    )
    rows = []
    peer: dict[str, float] = {}
    for mode in modes:
        for kind in kinds:
            runs = [measure(kind, mode, args.down_timeout) for _ in range(args.repeat)]
            up = statistics.median(r[0] for r in runs)
            downs = [r[1] for r in runs]
            known = [d for d in downs if d is not None]
            if kind == "directory":
                peer[mode] = up
                down = "n/a (local)"
            elif len(known) < len(downs):
                down = f"> {args.down_timeout:g} s ({len(downs) - len(known)} of {len(downs)})"
            else:
                down = f"{statistics.median(known):.2f} s"
            rows.append((mode, kind, up, down))
    print(
        f"{'endpoint':<9} {'kind':<13} {'Activate':>9} {'vs directory':>13} {'status down':>16}"
        f"  target"
    )
    for mode, kind, up, down in rows:
        ratio = f"{up / peer[mode]:.2f}x" if mode in peer else "-"
        verdict = "ok" if up <= ACTIVATE_TARGET else "MISSED"
        print(
            f"{mode:<9} {kind:<13} {up:>8.2f}s {ratio:>13} {down:>16}  "
            f"Activate ≤ {ACTIVATE_TARGET:g} s: {verdict}"
        )


if __name__ == "__main__":
    main()
