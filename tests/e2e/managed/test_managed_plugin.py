"""Orlop as a Docker managed plugin (`orlop/block`), built by scripts/build-plugin.

One private dockerd for the module (a test restarts it), a private registry for push,
upgrade and install, and a second private dockerd that installs from that registry. The
plugin is built once per session and its root filesystem cached across sessions. The
database is MariaDB from Debian's packages (tests/support/mariadb.py: no registry to pull
an image from), committing one row per transaction.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.servers.registry.server import Registry
from tests.support.dockerd import IMAGE, Dockerd
from tests.support.managed_plugin import (
    build_plugin,
    build_stamp,
    enable,
    plugin_id,
    plugin_socket,
    release_loop_devices,
    rootfs_bytes,
    volumes_of,
)
from tests.support.mariadb import ensure_mariadb_image, parse_check
from tests.support.names import unique


@pytest.fixture(scope="module")
def engine() -> Iterator[Dockerd]:
    daemon = Dockerd()
    try:
        daemon.start()
        daemon.ensure_image()
        yield daemon
    finally:
        daemon.destroy()


@pytest.fixture(scope="module")
def made_volumes() -> Iterator[set[str]]:
    """Names of every volume these tests make: what teardown looks for."""
    names: set[str] = set()
    try:
        yield names
    finally:
        release_loop_devices(names)


@pytest.fixture(scope="module")
def plugin(engine: Dockerd, made_volumes: set[str]) -> Iterator[str]:
    """`orlop/block:<unique tag>`, created and enabled on `engine`."""
    wanted = f"orlop/block:t{secrets.token_hex(3)}"
    name = build_plugin(engine, wanted)
    assert name == wanted  # the script prints the plugin's name last
    enable(engine, name)
    yield name
    for volume in volumes_of(engine, name):
        ids = engine.run("ps", "-aq", "--filter", f"volume={volume}", check=False).stdout.split()
        if ids:
            engine.run("rm", "-f", *ids, check=False)
        engine.run("volume", "rm", volume, check=False)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry()
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def pushed(engine: Dockerd, registry: Registry, plugin: str) -> str:
    """A second build of the same kind, pushed to the registry (and removed from `engine`)."""
    remote = f"{registry.address}/orlop/block:2"
    assert build_plugin(engine, remote) == remote
    engine.run("plugin", "push", remote, timeout=600)
    engine.run("plugin", "rm", remote)
    return remote


def _volume(made: set[str]) -> str:
    name = unique("mvol")
    made.add(name)
    return name


def _mount(volume: str, plugin: str, where: str = "/data") -> str:
    return f"type=volume,src={volume},dst={where},volume-driver={plugin}"


def _wait(condition: object, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(engine: Dockerd, container: str) -> int:
    result = engine.run(
        "exec", container, "mariadb", "--socket=/run/mysqld/mysqld.sock", "--batch",
        "--skip-column-names", "-e", "SELECT COUNT(*) FROM t.rows", check=False,
    )  # fmt: skip
    return int(result.stdout.strip()) if result.stdout.strip().isdigit() else 0


ROOTFS_LIMIT = 150_000_000  # issue 20: every kind's root filesystem at most 150 MB


def test_the_root_filesystem_is_within_the_size_limit(engine: Dockerd, plugin: str) -> None:
    # The build refuses a kind over the limit; this measures what dockerd really holds.
    size = rootfs_bytes(engine, plugin)
    assert size <= ROOTFS_LIMIT, f"{plugin}: root filesystem {size / 1e6:.0f} MB > 150 MB"


def test_seed_scenario_mariadb_rows_survive_kill_9(
    engine: Dockerd, plugin: str, made_volumes: set[str]
) -> None:
    image = ensure_mariadb_image(engine)
    volume = _volume(made_volumes)
    db = unique("db")
    engine.run(
        "run", "-d", "--name", db, "--network", "none",
        "--mount", _mount(volume, plugin, "/var/lib/mysql"), image, "orlop-mariadb", "write",
    )  # fmt: skip
    try:
        _wait(lambda: _rows(engine, db) >= 200, "200 committed rows", timeout=180)
        committed = _rows(engine, db)  # every one of these was acknowledged
        pid = int(engine.run("inspect", "-f", "{{.State.Pid}}", db).stdout)
        os.kill(pid, signal.SIGKILL)  # kill -9, mid-transaction
        _wait(
            lambda: engine.run("inspect", "-f", "{{.State.Running}}", db).stdout.strip() == "false",
            "the killed container to stop",
        )
    finally:
        engine.run("rm", "-f", db, check=False)
    inspect = engine.run("volume", "inspect", "-f", "{{.Driver}}", volume).stdout.strip()
    assert inspect == plugin  # the --mount really used the plugin, not `local`
    output = engine.run(
        "run", "--rm", "--network", "none", "--mount", _mount(volume, plugin, "/var/lib/mysql"),
        image, "orlop-mariadb", "check", timeout=300,
    ).stdout  # fmt: skip
    table = parse_check(output)
    assert table["bad"] == 0, output
    assert table["rows"] == table["max"] + 1, output  # no gap
    assert table["rows"] >= committed, output  # no acknowledged row lost
    # The orlop command reaches the plugin through its admin socket.
    admin = plugin_socket(engine, plugin, "admin.sock")
    listed = subprocess.run(
        [sys.executable, "-m", "orlop", "--admin-socket", admin, "volume", "ls", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert volume in {entry["name"] for entry in json.loads(listed.stdout)}


def test_disable_refused_while_mounted_then_set_keeps_volumes(
    engine: Dockerd, plugin: str, made_volumes: set[str]
) -> None:
    kept = _volume(made_volumes)
    engine.sh(_mount(kept, plugin), "echo kept > /data/file")
    holder = unique("hold")
    mount = _mount(kept, plugin)
    engine.run("run", "-d", "--name", holder, "--mount", mount, IMAGE, "sleep", "999")
    try:
        refused = engine.run("plugin", "disable", plugin, check=False)
        assert refused.returncode != 0 and "in use" in refused.stderr
    finally:
        engine.run("rm", "-f", holder)
    before = volumes_of(engine, plugin)
    # Docker counts volumes, not only mounts: with volumes left, disabling needs --force.
    assert engine.run("plugin", "disable", plugin, check=False).returncode != 0
    engine.run("plugin", "disable", "--force", plugin)
    engine.run("plugin", "set", plugin, "LOOPFILE_SIZE=64M", "ORLOP_LOG_LEVEL=debug")
    enable(engine, plugin)
    assert volumes_of(engine, plugin) == before
    assert engine.sh(_mount(kept, plugin), "cat /data/file") == "kept\n"
    fresh = _volume(made_volumes)
    total_kib = int(engine.sh(_mount(fresh, plugin), "df -k /data").splitlines()[-1].split()[1])
    assert 40 * 1024 < total_kib <= 64 * 1024  # the new default size reached the driver
    engine.run("plugin", "disable", "--force", plugin)
    engine.run("plugin", "set", plugin, "LOOPFILE_SIZE=10G", "ORLOP_LOG_LEVEL=info")
    enable(engine, plugin)


def test_upgrade_keeps_volumes_and_data(
    engine: Dockerd, plugin: str, pushed: str, made_volumes: set[str]
) -> None:
    volume = _volume(made_volumes)
    engine.sh(_mount(volume, plugin), "echo before-upgrade > /data/file && sync")
    before = volumes_of(engine, plugin)
    old = (plugin_id(engine, plugin), build_stamp(engine, plugin))
    engine.run("plugin", "disable", "--force", plugin)
    engine.run(
        "plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", plugin, pushed,
        timeout=600,
    )  # fmt: skip
    enable(engine, plugin)
    reference = engine.run("plugin", "inspect", "-f", "{{.PluginReference}}", plugin).stdout
    assert reference.strip() == pushed
    assert plugin_id(engine, plugin) == old[0]  # same plugin, same propagated mount
    assert build_stamp(engine, plugin) != old[1]  # another build's root filesystem
    assert volumes_of(engine, plugin) == before
    assert engine.sh(_mount(volume, plugin), "cat /data/file") == "before-upgrade\n"


def test_install_from_registry_into_another_engine(pushed: str, made_volumes: set[str]) -> None:
    other = Dockerd()
    try:
        other.start()
        other.ensure_image()
        other.run(
            "plugin", "install", "--grant-all-permissions", pushed, "LOOPFILE_SIZE=100M",
            timeout=600,
        )  # fmt: skip
        enabled = other.run("plugin", "inspect", "-f", "{{.Enabled}}", pushed).stdout
        assert enabled.strip() == "true"
        volume = _volume(made_volumes)
        other.sh(_mount(volume, pushed), "echo from-registry > /data/file && sync")
        assert other.sh(_mount(volume, pushed), "cat /data/file") == "from-registry\n"
        total_kib = int(other.sh(_mount(volume, pushed), "df -k /data").splitlines()[-1].split()[1])
        assert 80 * 1024 < total_kib <= 100 * 1024  # the setting given at install
        other.run("volume", "rm", volume)
        assert volumes_of(other, pushed) == set()
    finally:
        other.destroy()


def _starts(engine: Dockerd, container: str) -> str:
    return engine.run("exec", container, "cat", "/data/starts", check=False).stdout


def test_dockerd_restart_brings_the_volume_back(
    engine: Dockerd, plugin: str, made_volumes: set[str]
) -> None:
    volume = _volume(made_volumes)
    app = unique("app")
    engine.run(
        "run", "-d", "--name", app, "--restart", "always", "--network", "none",
        "--mount", _mount(volume, plugin), IMAGE,
        "sh", "-c", "echo started >> /data/starts && sync && exec sleep 3600",
    )  # fmt: skip
    try:
        _wait(lambda: "started" in _starts(engine, app), "the first start")
        # Stop dockerd as the host would (its containers stay, with their restart policy).
        assert engine.process is not None
        engine.process.send_signal(signal.SIGTERM)
        engine.process.wait(timeout=120)
        engine.process = None
        engine.start()
        _wait(
            lambda: _starts(engine, app) == "started\nstarted\n",
            "the container to come back with its volume",
            timeout=180,
        )
        assert volume in volumes_of(engine, plugin)
    finally:
        engine.run("rm", "-f", app, check=False)
