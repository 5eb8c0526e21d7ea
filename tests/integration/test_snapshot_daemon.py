"""Snapshots, clones and restore through a real daemon: the CLI, Docker's protocol, refusals,
and a kill -9 (fail point) at every named step, after which nothing half-made is left and
the original volume is intact. State on an xfs filesystem with reflink (a loop device)."""

from __future__ import annotations

import os
import subprocess
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
    assert "c3" not in node.cli("volume", "ls", "--no-usage").stdout

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


STEPS = [
    ("directory", "snapshot.after_copy", "snapshot"),
    ("loopfile", "snapshot.after_freeze", "snapshot"),
    ("loopfile", "snapshot.after_copy", "snapshot"),
    ("directory", "clone.after_copy", "clone"),
    ("loopfile", "clone.after_copy", "clone"),
    ("directory", "restore.after_copy", "restore"),
    ("directory", "restore.after_swap", "restore"),
    ("directory", "restore.after_replace", "restore"),
    ("loopfile", "restore.after_copy", "restore"),
    ("loopfile", "restore.after_replace", "restore"),
    ("directory", "backup.after_snapshot", "backup"),
    ("loopfile", "backup.after_snapshot", "backup"),
    ("loopfile", "backup.after_upload", "backup"),
    ("directory", "restore.after_download", "from_backup"),
    ("loopfile", "restore.after_download", "from_backup"),
]


@pytest.mark.parametrize(("kind", "failpoint", "operation"), STEPS)
def test_kill_at_every_step(node: SnapshotNode, kind: str, failpoint: str, operation: str) -> None:
    driver = node.dir_driver if kind == "directory" else node.blk_driver
    node.start()
    plugin = node.plugin(driver)
    plugin.ok("Create", Name="db", Opts={})
    path = _mount(node, driver, "db")
    _write(path, "table", "original")
    node.json("snapshot", "create", "db", "base", "--driver", driver)
    _write(path, "table", "current")
    backup = (
        node.json("backup", "create", "db", "--driver", driver) if "backup" in operation else {}
    )
    if operation == "restore":
        plugin.ok("Unmount", Name="db", ID="m1")
    node.restart(failpoint)

    if operation == "snapshot":
        node.crash_on("snapshot", "create", "db", "s2", "--driver", driver)
    elif operation == "clone":
        node.crash_on("volume", "create", "c", "--driver", driver, "--opt", "from_volume=db")
    elif operation == "restore":
        node.crash_on("snapshot", "restore", "base", "--driver", driver)
    elif operation == "backup":
        node.crash_on("backup", "create", "db", "--driver", driver)
    else:
        node.crash_on("backup", "restore", backup["short_id"], "--to", "r", "--driver", driver)
    node.start()
    node.cli("volume", "ls", "--no-usage")  # recovery has run once the admin socket answers
    for _ in range(100):
        if not node.half_made():
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert node.half_made() == []

    names = [v["name"] for v in node.json("volume", "ls", "--no-usage")]
    assert "c" not in names and "r" not in names  # a half-made clone or restore is gone
    snapshots = [s["name"] for s in node.json("snapshot", "ls", "--driver", driver)]
    assert snapshots == ["base"]  # the half-made snapshot is gone, the old one is whole
    if operation == "restore":
        expected = (
            "original"
            if failpoint in ("restore.after_swap", "restore.after_replace")
            else "current"
        )
        path = _mount(node, driver, "db", "m3")
        assert _read(path, "table") == expected
    else:
        assert _frozen_writes_pass(path), "the filesystem was left frozen"
        assert _read(path, "table") == "current"
    if operation in ("backup", "from_backup"):
        ids = [b["short_id"] for b in node.json("backup", "ls", "db", "--driver", driver)]
        assert ids[0] == backup["short_id"]
        assert len(ids) == (2 if failpoint == "backup.after_upload" else 1)
