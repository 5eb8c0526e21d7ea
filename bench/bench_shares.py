"""Share volumes over SMB: Orlop's azurefile and powerscale drivers (smbnetfs) vs
`rclone serve docker` with rclone's own SMB client (`smb` backend), on the same samba.

Run as root from the repository root:  .venv/bin/python bench/bench_shares.py [--mb 200]

One samba serves 127.0.0.1:445 (the tests' `tests/servers/samba/server.py`); the storage APIs are
the tests' fakes (Azure Files with SharedKey checks, OneFS over TLS), so Create makes a
real share on that samba. Both plugins are driven over their Docker plugin sockets
(Create → Mount → I/O on the mountpoint → Unmount), as in `bench_network.py`: write =
write and close every file + Unmount + until samba's directory holds every byte; read =
Mount on a second instance ("another host") + read every byte + Unmount. Each case
writes `--mb` MB as one file, then as 1,000 small files. The rclone peer mounts a
directory of one share with `serve docker` defaults (VFS cache off, like Orlop: every
write goes to the server before close returns). Orlop's azurefile driver asks for SMB 3
encryption (Azure refuses plain SMB from outside its regions); the powerscale driver and
rclone do not.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_network import (
    SMALL_FILES,
    Plugin,
    Result,
    best,
    directory_bytes,
    rclone_docker,
    read_cell,
    run_case,
    write_cell,
)
from bench.peers import environment
from orlop.backends.share.azurefile.api import AzureFiles
from orlop.backends.share.naming import share_name
from tests.servers.azurefile.server import AzureFilesServer
from tests.servers.powerscale.server import PowerScaleServer
from tests.servers.samba.server import Samba
from tests.support.daemon import OrlopDaemon

RCLONE_SHARE = "rclonebench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="data per case, MB (200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; best kept (1)")
    parser.add_argument("--only", choices=["azurefile", "powerscale"], help="one driver only")
    args = parser.parse_args()
    total = args.mb * 1000 * 1000
    work = Path(tempfile.mkdtemp(prefix="orlop-bench-shares-"))
    samba = Samba().start()
    account, key = f"orlopbench{secrets.token_hex(3)}", base64.b64encode(os.urandom(64)).decode()
    samba.add_user(account, key)
    azure = AzureFilesServer(
        work / "azure", account, key,
        on_share_created=samba.add_share, on_share_deleted=samba.remove_share,
    ).start()  # fmt: skip
    (work / "onefs").mkdir()
    onefs = PowerScaleServer(
        work / "onefs", account, key,
        on_smb_share=samba.add_share, on_smb_share_deleted=samba.remove_share,
    ).start()  # fmt: skip
    daemons: list[OrlopDaemon] = []
    rows: list[tuple[str, str, Result, Result]] = []
    try:
        key_file = work / "key"
        key_file.write_text(key)
        key_file.chmod(0o600)
        gib = max(2, args.mb * 3 // 1000 + 1)
        drivers = {
            "azurefile": {
                "backend": "azurefile",
                "options": {"size": f"{gib}G", "delete_on_remove": "true", "timeout": "60"},
                "settings": {"account": account, "account_key_file": str(key_file),
                             "endpoint": azure.url, "smb_host": "127.0.0.1", "client": "fuse"},
            },
            "powerscale": {
                "backend": "powerscale",
                "options": {"size": f"{gib}G", "protocol": "smb", "timeout": "60"},
                "settings": {"url": onefs.url, "username": account,
                             "password_file": str(key_file), "ca_file": str(onefs.ca_file),
                             "base_path": "/ifs/bench", "smb_host": "127.0.0.1",
                             "client": "fuse"},
            },
        }  # fmt: skip
        for host in ("a", "b"):
            (work / f"orlop-{host}").mkdir()
            daemon = OrlopDaemon(drivers, root=str(work / f"orlop-{host}"))
            daemons.append(daemon.start())
        # rclone's volumes: directories of one share on the same samba.
        AzureFiles(account, key, azure.url, 20).create_share(RCLONE_SHARE, gib * 4, None, "")
        rclone_root = azure.shares[RCLONE_SHARE].path
        obscured = (
            subprocess.run(
                ["rclone", "obscure", "-"], input=key.encode(), capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        config = work / "rclone.conf"
        config.write_text(
            f"[bsmb]\ntype = smb\nhost = 127.0.0.1\nuser = {account}\npass = {obscured}\n"
        )
        config.chmod(0o600)

        def azure_bytes(volume: str) -> int:
            share = azure.shares.get(share_name(volume))
            return directory_bytes(share.path) if share else 0

        def onefs_bytes(volume: str) -> int:
            return directory_bytes(Path(onefs.local(f"/ifs/bench/{volume}")))

        def make_dir(volume: str) -> dict[str, str]:
            (rclone_root / volume).mkdir(exist_ok=True)
            return {"remote": f"bsmb:{RCLONE_SHARE}/{volume}"}

        with (
            rclone_docker(config, work / "rclone-a") as rclone_a,
            rclone_docker(config, work / "rclone-b") as rclone_b,
        ):
            peer = Plugin("rclone smb", rclone_a, rclone_b, make_dir)
            stored: dict[str, Callable[[str], int]] = {
                "azurefile": azure_bytes,
                "powerscale": onefs_bytes,
            }
            for kind in ("azurefile", "powerscale"):
                if args.only and kind != args.only:
                    continue
                ours = Plugin(
                    f"orlop {kind}", daemons[0].socket(kind), daemons[1].socket(kind), lambda v: {}
                )
                for label, count in (("1 file", 1), (f"{SMALL_FILES} files", SMALL_FILES)):
                    mine = best(
                        run_case(ours, total, count, stored[kind]) for _ in range(args.repeat)
                    )
                    theirs = best(
                        run_case(peer, total, count, lambda v: directory_bytes(rclone_root / v))
                        for _ in range(args.repeat)
                    )
                    rows.append((kind, label, mine, theirs))
                    print(f"  {kind} {label}: {mine} vs {theirs}", file=sys.stderr, flush=True)
    finally:
        for daemon in daemons:
            daemon.destroy()
        onefs.stop()
        azure.stop()
        samba.destroy()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nShare volumes over SMB (samba on 127.0.0.1), {args.mb} MB per case; {environment()}"
        "\nOrlop: smbnetfs (FUSE, big_writes) vs rclone serve docker (smb backend); MB/s, "
        "higher is better; ratio = Orlop / rclone (target ≥ 1.00).\n"
    )
    header = (
        f"| {'driver':10} | {'layout':10} | {'Orlop write':>11} | {'rclone write':>12} | "
        f"{'ratio':>5} | {'Orlop read':>10} | {'rclone read':>11} | {'ratio':>5} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for kind, label, mine, theirs in rows:
        files = 1 if label == "1 file" else SMALL_FILES
        data = total // files * files
        our_read = mine.read_bytes / 1e6 / mine.read
        peer_read = theirs.read_bytes / 1e6 / theirs.read
        write_ratio = theirs.wrote / mine.wrote
        read_ratio = our_read / peer_read if peer_read else float("inf")
        missed = " MISSED" if min(write_ratio, read_ratio) < 1.0 else ""
        print(
            f"| {kind:10} | {label:10} | {write_cell(mine, data):>11} | "
            f"{write_cell(theirs, data):>12} | {write_ratio:5.2f} | "
            f"{read_cell(mine, data):>10} | {read_cell(theirs, data):>11} | "
            f"{read_ratio:5.2f} |{missed}"
        )


if __name__ == "__main__":
    main()
