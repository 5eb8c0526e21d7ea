"""Orlop behind a real dockerd: the docker CLI as users run it."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import IMAGE, Dockerd
from tests.support.names import unique


def _volume_names(dockerd: Dockerd, driver: str) -> set[str]:
    out = dockerd.run("volume", "ls", "--filter", f"driver={driver}", "--format", "{{.Name}}")
    return set(out.stdout.split())


def test_volume_create_ls_inspect_rm(dockerd: Dockerd, orlop_e2e: OrlopDaemon) -> None:
    driver = next(iter(orlop_e2e.drivers))
    name = unique("vol")
    dockerd.run("volume", "create", "-d", driver, "--opt", "mode=0700", "--opt", "uid=1000", name)
    assert name in _volume_names(dockerd, driver)
    (info,) = json.loads(dockerd.run("volume", "inspect", name).stdout)
    assert info["Driver"] == driver and info["Scope"] == "local"
    assert info["Status"]["backend"] == "directory"
    assert info["Status"]["options"] == {"mode": "0700", "uid": "1000"}
    assert info["Mountpoint"].endswith(f"/volumes/{name}/_data")
    out = dockerd.sh(name, "stat -c '%a %u' /data").split()
    assert out == ["700", "1000"]
    dockerd.run("volume", "rm", name)
    assert name not in _volume_names(dockerd, driver)
    assert orlop_e2e.client().call("Get", Name=name)["Err"]


def test_create_on_demand_with_v_and_mount(dockerd: Dockerd, orlop_e2e: OrlopDaemon) -> None:
    driver = next(iter(orlop_e2e.drivers))
    by_v, by_mount = unique("v"), unique("m")
    dockerd.sh(by_v, "echo v > /data/f", "--volume-driver", driver)
    dockerd.sh(f"type=volume,src={by_mount},dst=/data,volume-driver={driver}", "echo m > /data/f")
    assert {by_v, by_mount} <= _volume_names(dockerd, driver)
    client = orlop_e2e.client()
    for name, content in ((by_v, "v"), (by_mount, "m")):
        volume = client.ok("Get", Name=name)["Volume"]
        assert volume["Status"]["mounts"] == 0  # the --rm container unmounted it
        with open(f"{volume['Mountpoint']}/f") as written:
            assert written.read() == f"{content}\n"
        dockerd.run("volume", "rm", name)


def test_mount_without_volume_driver_is_local(dockerd: Dockerd, orlop_e2e: OrlopDaemon) -> None:
    """The README's pitfall: --volume-driver does not apply to --mount."""
    driver = next(iter(orlop_e2e.drivers))
    name = unique("pitfall")
    dockerd.sh(f"type=volume,src={name},dst=/data", "true", "--volume-driver", driver)
    (info,) = json.loads(dockerd.run("volume", "inspect", name).stdout)
    assert info["Driver"] == "local"
    assert "not found" in orlop_e2e.client().call("Get", Name=name)["Err"]
    dockerd.run("volume", "rm", name)


def test_data_outlives_containers_and_is_shared(dockerd: Dockerd, orlop_e2e: OrlopDaemon) -> None:
    driver = next(iter(orlop_e2e.drivers))
    name = unique("shared")
    dockerd.run("volume", "create", "-d", driver, name)
    args = ["run", "-d", "--network", "none", "-v", f"{name}:/data", IMAGE]
    first = dockerd.run(*args, "sleep", "300").stdout.strip()
    second = dockerd.run(*args, "sleep", "300").stdout.strip()
    client = orlop_e2e.client()
    try:
        assert client.ok("Get", Name=name)["Volume"]["Status"]["mounts"] == 2
        dockerd.run("exec", first, "sh", "-c", "echo from-first > /data/one")
        dockerd.run("rm", "-f", first)
        assert client.ok("Get", Name=name)["Volume"]["Status"]["mounts"] == 1
        dockerd.run("exec", second, "sh", "-c", "cat /data/one > /data/two")
    finally:
        dockerd.run("rm", "-f", second, check=False)
    assert client.ok("Get", Name=name)["Volume"]["Status"]["mounts"] == 0
    out = dockerd.sh(name, "cat /data/two")
    assert out == "from-first\n"
    dockerd.run("volume", "rm", name)


def test_plugin_errors_reach_the_docker_cli(dockerd: Dockerd, orlop_e2e: OrlopDaemon) -> None:
    driver = next(iter(orlop_e2e.drivers))
    bad = dockerd.run(
        "volume", "create", "-d", driver, "--opt", "size=1G", unique("e"), check=False
    )
    assert bad.returncode != 0
    allowed = (
        "device, from_backup, from_snapshot, from_volume, gid, mode, o, snapshot_schedule, "
        "type, uid"
    )
    assert f"unknown option size: allowed options are {allowed}" in bad.stderr
    bad = dockerd.run(
        "volume", "create", "-d", driver, "--opt", "mode=999", unique("e"), check=False
    )
    assert bad.returncode != 0 and "invalid value for option mode" in bad.stderr
    assert orlop_e2e.client().ok("List")["Volumes"] == []


def test_daemon_kill_9_keeps_mounts_counted(dockerd: Dockerd, orlop_e2e: OrlopDaemon) -> None:
    driver = next(iter(orlop_e2e.drivers))
    name = unique("crash")
    dockerd.run(
        "volume", "create", "-d", driver, "--opt", "type=tmpfs", "--opt", "device=tmpfs", name
    )
    script = "echo alive > /data/f; sleep 300"
    run = ["run", "-d", "--network", "none", "-v", f"{name}:/data", IMAGE, "sh", "-c", script]
    container = dockerd.run(*run).stdout.strip()
    try:
        orlop_e2e.kill(signal.SIGKILL)
        orlop_e2e.start()
        assert orlop_e2e.client().ok("Get", Name=name)["Volume"]["Status"]["mounts"] == 1
        refused = dockerd.run("volume", "rm", name, check=False)
        assert refused.returncode != 0
        assert "in use" in refused.stderr
        assert dockerd.run("exec", container, "cat", "/data/f").stdout == "alive\n"
    finally:
        dockerd.run("rm", "-f", container, check=False)
    assert orlop_e2e.client().ok("Get", Name=name)["Volume"]["Status"]["mounts"] == 0
    dockerd.run("volume", "rm", name)


def test_dockerd_restart_keeps_volumes(dockerd: Dockerd, orlop_e2e: OrlopDaemon) -> None:
    driver = next(iter(orlop_e2e.drivers))
    name = unique("persist")
    dockerd.run("volume", "create", "-d", driver, name)
    dockerd.sh(name, "echo kept > /data/f")
    dockerd.restart()
    assert name in _volume_names(dockerd, driver)
    out = dockerd.sh(name, "cat /data/f")
    assert out == "kept\n"
    dockerd.run("volume", "rm", name)


def test_orlop_restart_while_dockerd_runs(dockerd: Dockerd, orlop_e2e: OrlopDaemon) -> None:
    driver = next(iter(orlop_e2e.drivers))
    name = unique("again")
    dockerd.run("volume", "create", "-d", driver, name)
    assert orlop_e2e.kill(signal.SIGTERM) == 0
    orlop_e2e.start()
    assert dockerd.sh(name, "echo ok > /data/f && cat /data/f") == "ok\n"
    dockerd.run("volume", "rm", name)


@pytest.fixture(autouse=True)
def _no_leftover_containers(dockerd: Dockerd) -> None:
    leftovers = dockerd.run("ps", "-aq").stdout.split()
    if leftovers:
        subprocess.run(
            [dockerd.docker, "rm", "-f", *leftovers],
            env=dockerd.env,
            capture_output=True,
            check=False,
        )
