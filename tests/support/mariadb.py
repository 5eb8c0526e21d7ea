"""A MariaDB container image built from this host's Debian packages (no registry is reachable).

    from tests.support.mariadb import ensure_mariadb_image
    image = ensure_mariadb_image(dockerd)  # a tag in that dockerd: orlop-test-mariadb:<hash>
    dockerd.run("run", "-d", "-v", "db:/var/lib/mysql", image, "orlop-mariadb", "write")

What is in it: Debian's `mariadbd` and `mariadb` client (package mariadb-server, installed by
`scripts/setup --test`) with every library `ldd` names, the server's messages and charsets,
busybox-static for a shell, and one script, `orlop-mariadb`:

    orlop-mariadb serve    run the server on /var/lib/mysql in the foreground
    orlop-mariadb write    start it, create table t.rows (id, sum = SHA2(id)) and insert
                           rows 0, 1, 2, … one committed transaction each, forever
    orlop-mariadb check    start it on a copy of such a datadir (InnoDB crash recovery runs),
                           and print `rows=N max=M bad=B`: a consistent table has N = M + 1
                           (no gap) and B = 0 (every checksum right)
    orlop-mariadb sql SQL  start it and run one statement; print the result

The server runs as root with `--skip-grant-tables` and no network (a test fixture, not a
deployment); its datadir needs no `mariadb-install-db`. The root filesystem is cached as a tar
file under /var/cache/orlop-test/, named by a hash of its inputs (binaries, libraries, script),
so a new Debian package builds a new image and an unchanged host reuses the old one.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.dockerd import Dockerd

CACHE_DIR = Path("/var/cache/orlop-test")
BINARIES = ["/usr/sbin/mariadbd", "/usr/bin/mariadb"]
SHARE = Path("/usr/share/mysql")
SHARE_PARTS = ["english", "charsets"]
BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "sleep", "cat", "echo", "mkdir", "rm", "ls", "test", "true", "kill", "seq"]

SERVER_ARGS = (
    "--no-defaults --user=root --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock "
    "--skip-networking --skip-grant-tables --lc-messages-dir=/usr/share/mysql "
    "--innodb-buffer-pool-size=16M --innodb-log-file-size=8M --innodb-flush-log-at-trx-commit=1"
)

SCRIPT = f"""#!/bin/sh
# orlop-mariadb serve|write|check|sql: see tests/support/mariadb.py
set -e
mkdir -p /run/mysqld /tmp
client() {{ mariadb --socket=/run/mysqld/mysqld.sock --batch --skip-column-names "$@"; }}
start() {{
    mariadbd {SERVER_ARGS} >/tmp/mariadbd.log 2>&1 &
    for i in $(seq 1 600); do
        if client -e 'SELECT 1' >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    cat /tmp/mariadbd.log >&2
    exit 1
}}
case "$1" in
serve) exec mariadbd {SERVER_ARGS} ;;
write)
    start
    client -e 'CREATE DATABASE IF NOT EXISTS t;
        CREATE TABLE IF NOT EXISTS t.rows (id INT PRIMARY KEY, sum CHAR(64)) ENGINE=InnoDB'
    i=0
    while :; do
        echo "INSERT INTO t.rows VALUES ($i, SHA2('$i', 256));"
        i=$((i + 1))
    done | client
    ;;
check)
    start
    client -e "SELECT CONCAT('rows=', COUNT(*), ' max=', COALESCE(MAX(id), -1),
        ' bad=', COALESCE(SUM(sum <> SHA2(id, 256)), 0)) FROM t.rows"
    ;;
sql)
    start
    client -e "$2"
    ;;
*) echo "usage: orlop-mariadb serve|write|check|sql SQL" >&2; exit 2 ;;
esac
"""


def _libraries(binary: str) -> list[str]:
    """Every shared library `binary` loads, with the dynamic loader."""
    output = subprocess.run(
        ["ldd", binary], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found = re.findall(r"(/\S+\.so[\w.\-]*)", output)
    return sorted(set(found))


def _inputs() -> list[str]:
    files = list(BINARIES)
    for binary in BINARIES:
        files += _libraries(binary)
    for part in SHARE_PARTS:
        for root, _dirs, names in os.walk(SHARE / part):
            files += [os.path.join(root, name) for name in names]
    return [*sorted(set(files)), BUSYBOX]


def _digest(files: list[str]) -> str:
    digest = hashlib.sha256(SCRIPT.encode())
    for path in files:
        digest.update(path.encode())
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _add(tar: tarfile.TarFile, source: str, target: str, mode: int | None = None) -> None:
    info = tar.gettarinfo(os.path.realpath(source), arcname=target.lstrip("/"))
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if mode is not None:
        info.mode = mode
    with open(source, "rb") as file:
        tar.addfile(info, file)


def _directory(tar: tarfile.TarFile, path: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _text(tar: tarfile.TarFile, path: str, text: str, mode: int = 0o644) -> None:
    data = text.encode()
    info = tarfile.TarInfo(path.lstrip("/"))
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def build_rootfs() -> Path:
    """The image's root filesystem as a tar file (cached by the hash of its inputs)."""
    missing = [b for b in [*BINARIES, BUSYBOX] if not os.path.exists(b)]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} missing: run scripts/setup --test "
            "(it installs mariadb-server and busybox-static)"
        )
    files = _inputs()
    tarball = CACHE_DIR / f"mariadb-rootfs-{_digest(files)}.tar"
    if tarball.exists():
        return tarball
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(f".part{os.getpid()}")
    with tarfile.open(partial, "w") as tar:
        seen: set[str] = set()
        for path in files:
            for parent in reversed(Path(path).parents):
                if str(parent) != "/" and str(parent) not in seen:
                    seen.add(str(parent))
                    _directory(tar, str(parent))
            _add(tar, path, path)
        for directory in ("/tmp", "/run", "/run/mysqld", "/var", "/var/lib", "/var/lib/mysql"):
            if directory not in seen:
                _directory(tar, directory, 0o1777 if directory == "/tmp" else 0o755)
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        _text(tar, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        _text(tar, "/etc/group", "root:x:0:\n")
        _text(tar, "/usr/local/bin/orlop-mariadb", SCRIPT, 0o755)
    os.replace(partial, tarball)
    return tarball


def ensure_mariadb_image(dockerd: Dockerd) -> str:
    """The MariaDB test image in `dockerd` (imported once per dockerd); its tag."""
    tarball = build_rootfs()
    tag = f"orlop-test-mariadb:{tarball.stem.removeprefix('mariadb-rootfs-')}"
    if dockerd.run("image", "inspect", tag, check=False).returncode == 0:
        return tag
    with open(tarball, "rb") as source:
        result = subprocess.run(
            [
                dockerd.docker,
                "import",
                "--change",
                "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin",
                "-",
                tag,
            ],
            stdin=source,
            capture_output=True,
            env=dockerd.env,
            timeout=300,
        )
    if result.returncode != 0:
        raise RuntimeError(f"docker import of the MariaDB image failed: {result.stderr.decode()}")
    return tag


def parse_check(output: str) -> dict[str, int]:
    """`rows=N max=M bad=B` (the last such line of `orlop-mariadb check`) as numbers."""
    line = [x for x in output.splitlines() if x.startswith("rows=")][-1]
    return {key: int(value) for key, value in (pair.split("=") for pair in line.split())}
