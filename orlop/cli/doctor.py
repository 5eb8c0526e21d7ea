"""`orlop doctor`: is this host ready to serve volumes? Each failed check comes with its fix."""

from __future__ import annotations

import os
import socket
import tempfile

from orlop.backends import backend_class
from orlop.backends.base import Check
from orlop.cli.client import AdminClient
from orlop.config import Config
from orlop.core.model import OrlopError


def docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host.removeprefix("unix://")


def _ping_docker(path: str) -> tuple[bool, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(3)
    try:
        sock.connect(path)
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = sock.recv(4096)
    except OSError as error:
        return False, f"{path}: {error.strerror or error}"
    finally:
        sock.close()
    status_line = reply.split(b"\r\n", 1)[0].decode(errors="replace")
    ok = status_line.startswith("HTTP/") and " 200 " in status_line
    return ok, f"{path} answered {status_line}"


def _writable(directory: str) -> tuple[bool, str]:
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".orlop-doctor-"):
            pass
    except OSError as error:
        return False, f"{directory}: {error.strerror or error}"
    return True, directory


def snapshot_method_check(kind: str, state_dir: str) -> Check | None:
    """How snapshots and clones of a local driver's volumes are made on this host."""
    from orlop.host.clone import can_reflink, snapshot_method

    if kind not in ("directory", "loopfile"):
        return None
    where = state_dir
    while not os.path.isdir(where):  # not made yet: the filesystem it will be made on
        where = os.path.dirname(where)
    if kind == "directory":
        method = snapshot_method(where)
    else:
        method = "reflink" if can_reflink(where) else "copy"
    detail = {
        "btrfs subvolume": "btrfs subvolume snapshots (instant)",
        "reflink": "reflink copies (instant, blocks shared)",
        "copy": "plain copies (time and space grow with the data; use xfs or btrfs for "
        "instant ones)",
    }[method]
    return Check("snapshot method", True, f"{method}: {detail} in {where}")


def run_checks(config: Config) -> list[Check]:
    checks = [
        Check(
            "running as root",
            os.geteuid() == 0,
            f"uid {os.geteuid()}",
            "run orlop as root (sudo): mounts and the plugin socket need it",
        ),
        Check("configuration", True, config.source),
    ]
    ok, detail = _ping_docker(docker_socket())
    checks.append(
        Check(
            "dockerd reachable",
            ok,
            detail,
            "start Docker (systemctl start docker) or set DOCKER_HOST=unix:///path/to/docker.sock",
        )
    )
    ok, detail = _writable(config.plugin_dir)
    checks.append(
        Check("plugin directory writable", ok, detail, f"run as root; mkdir -p {config.plugin_dir}")
    )
    ok, detail = _writable(config.state_dir)
    checks.append(Check("state directory writable", ok, detail, "run as root, or change state_dir"))
    try:
        version = AdminClient(config.admin_socket, timeout=5).call("version")
        checks.append(Check("orlop daemon", True, f"version {version['version']} running"))
    except OrlopError as error:
        checks.append(Check("orlop daemon", False, str(error), "start it: orlop serve"))
    for name, driver in sorted(config.drivers.items()):
        try:
            cls = backend_class(driver.backend)
        except OrlopError as error:
            checks.append(Check(f"driver {name}", False, str(error), "fix the config"))
            continue
        try:
            cls.settings_model.parse(driver.backend, driver.settings)
            checks.append(Check(f"driver {name}: settings", True, "accepted"))
        except OrlopError as error:
            checks.append(Check(f"driver {name}: settings", False, str(error), "fix the config"))
        for check in cls.host_checks():
            checks.append(
                Check(
                    f"driver {name} ({driver.backend}): {check.name}",
                    check.ok,
                    check.detail,
                    check.fix,
                )
            )
        method = snapshot_method_check(driver.backend, config.driver_state_dir(name))
        if method is not None:
            checks.append(Check(f"driver {name}: {method.name}", method.ok, method.detail))
        sock = config.socket_path(name)
        checks.append(
            Check(
                f"driver {name}: plugin socket",
                os.path.exists(sock),
                sock,
                "start the daemon: orlop serve",
            )
        )
    return checks
