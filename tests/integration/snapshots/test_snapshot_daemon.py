"""Snapshots, clones and restore through a real daemon: the CLI, Docker's protocol, refusals,
and a kill -9 (fail point) at every named step, after which nothing half-made is left and
the original volume is intact. State on an xfs filesystem with reflink (a loop device)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.hostfs import HostFilesystem
from tests.support.snapshot_node import SnapshotNode


@pytest.fixture(scope="module")
def xfs() -> Iterator[HostFilesystem]:
    fs = HostFilesystem("xfs", size=3 * 1024**3)
    try:
        yield fs
    finally:
        fs.destroy()


@pytest.fixture
def node(xfs: HostFilesystem) -> Iterator[SnapshotNode]:
    node = SnapshotNode(xfs)
    try:
        yield node
    finally:
        node.destroy()


def _write(path: str, name: str, text: str) -> None:
    with open(os.path.join(path, name), "w") as file:
        file.write(text)
        os.fsync(file.fileno())


def _read(path: str, name: str) -> str:
    with open(os.path.join(path, name)) as file:
        return file.read()


def _mount(node: SnapshotNode, driver: str, name: str, mount_id: str = "m1") -> str:
    return str(node.plugin(driver).ok("Mount", Name=name, ID=mount_id)["Mountpoint"])


@pytest.mark.parametrize("kind", ["directory", "loopfile"])
def test_snapshot_clone_restore_through_the_cli(node: SnapshotNode, kind: str) -> None:
    node.start()
    driver = node.dir_driver if kind == "directory" else node.blk_driver
    plugin = node.plugin(driver)
    plugin.ok("Create", Name="db", Opts={})
    path = _mount(node, driver, "db")
    _write(path, "table", "v1")

    made = node.json("snapshot", "create", "db", "s1", "--driver", driver)
    assert made["name"] == "s1" and made["volume"] == "db" and made["method"] == "reflink"
    listed = node.json("snapshot", "ls", "db", "--driver", driver)
    assert [s["name"] for s in listed] == ["s1"] and listed[0]["schedule"] == ""
    _write(path, "table", "v2")

    plugin.ok("Create", Name="test-copy", Opts={"from_snapshot": "s1"})
    assert _read(_mount(node, driver, "test-copy"), "table") == "v1"
    plugin.ok("Create", Name="live-copy", Opts={"from_volume": "db"})
    assert _read(_mount(node, driver, "live-copy"), "table") == "v2"
    missing = plugin.call("Create", Name="c3", Opts={"from_snapshot": "nope"})
    assert "snapshot nope does not exist" in missing["Err"]
    assert "c3" not in {v["name"] for v in node.json("volume", "ls", "--no-usage")}

    refused = node.cli("snapshot", "restore", "s1", check=False)
    assert refused.returncode == 1 and "is mounted" in refused.stderr
    assert _read(path, "table") == "v2"  # refused: nothing changed
    plugin.ok("Unmount", Name="db", ID="m1")
    restored = node.json("snapshot", "restore", "s1")
    assert restored["restored_into"] == "db"
    assert _read(_mount(node, driver, "db", "m2"), "table") == "v1"
    assert node.half_made() == []

    assert node.cli("snapshot", "restore", "ghost", check=False).returncode == 1
    removed = node.json("snapshot", "rm", "s1", "--driver", driver)
    assert [r["name"] for r in removed["removed"]] == ["s1"]
    assert node.json("snapshot", "ls", "--driver", driver) == []


def test_refusals(node: SnapshotNode) -> None:
    node.start()
    plugin = node.plugin(node.dir_driver)
    plugin.ok("Create", Name="ram", Opts={"type": "tmpfs", "device": "tmpfs"})
    result = node.cli("snapshot", "create", "ram", check=False)
    assert result.returncode == 1 and "plain directory volumes only" in result.stderr
    bad = plugin.call("Create", Name="x", Opts={"snapshot_schedule": "every:minute"})
    assert "not a schedule entry" in bad["Err"] and "hourly" in bad["Err"]
    both = plugin.call("Create", Name="x", Opts={"from_volume": "ram", "from_snapshot": "s"})
    assert "give one of" in both["Err"]
    assert node.half_made() == []


def _frozen_writes_pass(path: str) -> bool:
    """A write to `path` finishes (a filesystem left frozen would block it forever)."""
    try:
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={path}/probe", "bs=4k", "count=1", "conv=fsync"],
            check=True,
            capture_output=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return False
    return True


STEPS = {
    "directory": [
        ("snapshot.after_copy", "snapshot"),
        ("clone.after_copy", "clone"),
        ("restore.after_copy", "restore"),
        ("restore.after_swap", "restore"),
        ("restore.after_replace", "restore"),
        ("backup.after_snapshot", "backup"),
        ("restore.after_download", "from_backup"),
    ],
    "loopfile": [
        ("snapshot.after_freeze", "snapshot"),
        ("snapshot.after_copy", "snapshot"),
        ("clone.after_copy", "clone"),
        ("restore.after_copy", "restore"),
        ("restore.after_replace", "restore"),
        ("backup.after_snapshot", "backup"),
        ("backup.after_upload", "backup"),
        ("restore.after_download", "from_backup"),
    ],
}


def _crash(node: SnapshotNode, driver: str, volume: str, operation: str, backup: str) -> None:
    if operation == "snapshot":
        node.crash_on("snapshots/create", volume=volume, snapshot=f"{volume}-new", driver=driver)
    elif operation == "clone":
        options = {"from_volume": volume}
        node.crash_on("volumes/create", name=f"{volume}-c", driver=driver, options=options)
    elif operation == "restore":
        node.crash_on("snapshots/restore", snapshot=f"{volume}-base", driver=driver)
    elif operation == "backup":
        node.crash_on("backups/create", volume=volume, driver=driver)
    else:
        node.crash_on("backups/restore", backup=backup, to=f"{volume}-r", driver=driver)


@pytest.mark.parametrize("kind", sorted(STEPS))
def test_kill_at_every_step(node: SnapshotNode, kind: str) -> None:
    """For each named step: arm it, drive the daemon there, restart, and check."""
    driver = node.dir_driver if kind == "directory" else node.blk_driver
    node.start()
    for number, (failpoint, operation) in enumerate(STEPS[kind]):
        volume = f"v{number}"
        plugin = node.plugin(driver)
        plugin.ok("Create", Name=volume, Opts={})
        path = _mount(node, driver, volume)
        _write(path, "table", "original")
        node.api("snapshots/create", volume=volume, snapshot=f"{volume}-base", driver=driver)
        _write(path, "table", "current")
        backup = ""
        if "backup" in operation:
            backup = node.api("backups/create", volume=volume, driver=driver)["short_id"]
        if operation == "restore":
            plugin.ok("Unmount", Name=volume, ID="m1")
        node.restart(failpoint)
        _crash(node, driver, volume, operation, backup)
        node.start()
        node.api("volumes/list")  # recovery has begun once the admin socket answers
        deadline = time.monotonic() + 30
        while node.half_made() and time.monotonic() < deadline:
            time.sleep(0.1)
        step = f"{kind} {failpoint}"
        assert node.half_made() == [], step

        names = {v["name"] for v in node.api("volumes/list", driver=driver)}
        assert names.isdisjoint({f"{volume}-c", f"{volume}-r"}), step  # half-made: gone
        snapshots = node.api("snapshots/list", volume=volume, driver=driver)
        assert [s["name"] for s in snapshots] == [f"{volume}-base"], step
        if operation == "restore":
            replaced = failpoint in ("restore.after_swap", "restore.after_replace")
            path = _mount(node, driver, volume, "m3")
            assert _read(path, "table") == ("original" if replaced else "current"), step
        else:
            assert _frozen_writes_pass(path), f"{step}: the filesystem was left frozen"
            assert _read(path, "table") == "current", step
        if backup:
            backups = node.api("backups/list", volume=volume, driver=driver)
            assert backups[0]["short_id"] == backup, step
            assert len(backups) == (2 if failpoint == "backup.after_upload" else 1), step


def test_schedule_catches_up_at_start(xfs: HostFilesystem) -> None:
    """A daemon that was down takes each period's missed snapshot once, when it starts."""
    node = SnapshotNode(xfs, {"snapshot_schedule": "daily:3,weekly:1"})
    try:
        node.start()
        node.plugin(node.dir_driver).ok("Create", Name="db", Opts={})
        node.plugin(node.dir_driver).ok(
            "Create", Name="cache", Opts={"snapshot_schedule": "hourly:1"}
        )
        node.restart()  # the start's round: everything is due
        deadline = time.monotonic() + 30
        made: list[dict[str, str]] = []
        while len(made) < 3 and time.monotonic() < deadline:
            made = node.api("snapshots/list", driver=node.dir_driver)
            time.sleep(0.2)
        schedules = sorted((s["volume"], s["schedule"]) for s in made)
        assert schedules == [("cache", "hourly"), ("db", "daily"), ("db", "weekly")]
        table = node.cli("snapshot", "ls", "db").stdout.splitlines()
        assert "SCHEDULE" in table[0] and any("daily" in row for row in table[1:])
    finally:
        node.destroy()
