"""The `orlop` command line against a running daemon, through its root-only admin socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.daemon import OrlopDaemon


def test_volume_commands(directory_daemon: OrlopDaemon, driver_name: str) -> None:
    daemon = directory_daemon
    assert daemon.cli("volume", "create", "cli-vol", "-o", "mode=0700").stdout.strip() == "cli-vol"
    path = daemon.client().ok("Path", Name="cli-vol")["Mountpoint"]
    with open(os.path.join(path, "data"), "wb") as data:
        data.write(b"x" * 100_000)

    table = daemon.cli("volume", "ls").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "DRIVER",
        "BACKEND",
        "USED/SIZE",
        "FREE",
        "MOUNTS",
        "CREATED",
    ]
    row = table[1].split()
    assert row[:3] == ["cli-vol", driver_name, "directory"] and row[5] == "0"
    assert row[3].endswith("K")  # ~100K used

    listed = json.loads(daemon.cli("volume", "ls", "--json").stdout)
    assert listed[0]["name"] == "cli-vol" and listed[0]["usage"]["used"] >= 100_000
    (inspected,) = json.loads(daemon.cli("volume", "inspect", "cli-vol").stdout)
    assert inspected["options"] == {"mode": "0700"} and inspected["mountpoint"] == path

    daemon.client().ok("Mount", Name="cli-vol", ID="c")
    refused = daemon.cli("volume", "rm", "cli-vol", check=False)
    assert refused.returncode == 1 and "in use by 1 mount" in refused.stderr
    daemon.client().ok("Unmount", Name="cli-vol", ID="c")
    assert daemon.cli("volume", "rm", "cli-vol").stdout.strip() == "cli-vol"
    assert json.loads(daemon.cli("volume", "ls", "--json").stdout) == []


def test_cli_errors(directory_daemon: OrlopDaemon) -> None:
    daemon = directory_daemon
    bad = daemon.cli("volume", "create", "bad/name", check=False)
    assert bad.returncode == 1 and "must match" in bad.stderr
    bad = daemon.cli("volume", "create", "v", "-o", "nonsense", check=False)
    assert bad.returncode == 2 and "use KEY=VALUE" in bad.stderr
    bad = daemon.cli("volume", "create", "v", "-o", "size=1G", check=False)
    assert bad.returncode == 1 and "allowed options are" in bad.stderr
    missing = daemon.cli("volume", "inspect", "ghost", check=False)
    assert missing.returncode == 1 and "ghost not found" in missing.stderr
    bad = daemon.cli("volume", "resize", "ghost", "1G", check=False)
    assert bad.returncode == 1 and "not found" in bad.stderr


def test_driver_ls_and_version(directory_daemon: OrlopDaemon, driver_name: str) -> None:
    daemon = directory_daemon
    (driver,) = json.loads(daemon.cli("driver", "ls", "--json").stdout)
    assert driver["name"] == driver_name and driver["backend"] == "directory"
    assert driver["capabilities"]["scope"] == "local"
    assert driver["socket"] == daemon.socket(driver_name)
    assert driver["capabilities"] == {
        "scope": "local",
        "snapshot": True,
        "clone": True,
        "restore": True,
        "backup": False,  # no backup_repository configured
        "resize": False,
        "quota": False,
        "exclusive_attach": False,
    }
    table = daemon.cli("driver", "ls").stdout.splitlines()
    assert table[0].split()[:4] == ["DRIVER", "BACKEND", "SCOPE", "CAPABILITIES"]
    assert table[1].split()[1:4] == ["directory", "local", "snapshot,clone,restore"]
    version = json.loads(daemon.cli("version", "--json").stdout)
    assert version["client"] == version["daemon"]


def test_daemon_not_running(directory_daemon: OrlopDaemon) -> None:
    directory_daemon.stop()
    result = directory_daemon.cli("volume", "ls", check=False)
    assert result.returncode == 1 and "daemon is not running" in result.stderr
    assert "start it with `orlop serve`" in result.stderr


def test_admin_socket_is_root_only(directory_daemon: OrlopDaemon) -> None:
    code = (
        "import os, sys;"
        "from orlop.cli.client import AdminClient;"  # imported while still root
        "os.setgid(65534); os.setuid(65534);"
        f"AdminClient({directory_daemon.admin_socket!r}).call('version')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "permission denied" in result.stderr.lower()
    # Even with the file mode opened up, the daemon checks the peer's uid itself.
    os.chmod(directory_daemon.root, 0o711)
    os.chmod(directory_daemon.admin_socket, 0o666)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "admin socket is for root only" in result.stderr


def test_doctor(directory_daemon: OrlopDaemon, driver_name: str) -> None:
    result = directory_daemon.cli("doctor", "--json", check=False)
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert checks["running as root"]["ok"]
    assert checks["orlop daemon"]["ok"]
    assert checks[f"driver {driver_name} (directory): command mount"]["ok"]
    assert checks[f"driver {driver_name}: plugin socket"]["ok"]
    failed = [c for c in checks.values() if not c["ok"]]
    assert result.returncode == (1 if failed else 0)
    assert all(c["fix"] for c in failed)
    directory_daemon.stop()
    env_result = subprocess.run(
        [sys.executable, "-m", "orlop", "--config", str(directory_daemon.config_path), "doctor"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"},
    )
    assert env_result.returncode == 1
    assert "FAIL dockerd reachable" in env_result.stdout and "fix:" in env_result.stdout
    assert "FAIL orlop daemon" in env_result.stdout
