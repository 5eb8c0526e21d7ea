"""Backups through restic to the S3 server (moto) and the sshd the network tests start; a
second daemon (another "host") with the same repository lists them and restores each into a
new volume, byte for byte. Plus the refusals: wrong password, unreachable repository."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.directory.backend import DirectoryBackend
from tests.servers.s3.server import ACCESS_KEY, SECRET_KEY, S3Server
from tests.servers.sshd.server import Sshd, free_port
from tests.support.hostfs import HostFilesystem
from tests.support.names import unique
from tests.support.network_fixtures import s3, sshd  # noqa: F401
from tests.support.snapshot_node import SnapshotNode, repository_settings


@pytest.fixture(scope="module")
def btrfs() -> Iterator[HostFilesystem]:
    fs = HostFilesystem("btrfs", size=3 * 1024**3)
    try:
        yield fs
    finally:
        fs.destroy()


def _s3_settings(root: str, server: S3Server, bucket: str) -> dict[str, str]:
    env_file = os.path.join(root, "restic.env")
    with open(os.open(env_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as file:
        file.write(f"AWS_ACCESS_KEY_ID={ACCESS_KEY}\nAWS_SECRET_ACCESS_KEY={SECRET_KEY}\n")
    settings = repository_settings(root, f"s3:{server.endpoint}/{bucket}/orlop")
    return {**settings, "backup_env_file": env_file, "keep_last": "5"}


def _sftp_settings(root: str, server: Sshd, directory: str) -> dict[str, str]:
    location = f"sftp://root@127.0.0.1:{server.port}/{server.data}/{directory}"
    return {
        **repository_settings(root, location),
        "backup_ssh_identity": str(server.client_key),
        "backup_ssh_known_hosts": str(server.known_hosts),
    }


def _fill(path: str) -> dict[str, str]:
    """Write some files (random data, a subdirectory); return name → sha256."""
    os.makedirs(os.path.join(path, "sub"), exist_ok=True)
    digests = {}
    for name, size in (("a.bin", 3 * 1024 * 1024), ("sub/b.bin", 100_000), ("empty", 0)):
        data = os.urandom(size)
        with open(os.path.join(path, name), "wb") as file:
            file.write(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def _digests(path: str, names: list[str]) -> dict[str, str]:
    result = {}
    for name in names:
        with open(os.path.join(path, name), "rb") as file:
            result[name] = hashlib.sha256(file.read()).hexdigest()
    return result


def _round_trip(first: SnapshotNode, second: SnapshotNode, kinds: tuple[str, ...]) -> None:
    first.start()
    second.start()
    drivers = {"directory": first.dir_driver, "loopfile": first.blk_driver}
    for driver in (drivers[kind] for kind in kinds):
        plugin = first.plugin(driver)
        plugin.ok("Create", Name=f"data-{driver}", Opts={})
        path = plugin.ok("Mount", Name=f"data-{driver}", ID="m")["Mountpoint"]
        written = _fill(path)
        made = first.json("backup", "create", f"data-{driver}")  # mounted: from a snapshot
        assert made["volume"] == f"data-{driver}" and made["files"] == 3
        with open(os.path.join(path, "a.bin"), "ab") as file:
            file.write(b"changed after the backup")

        # The other host: same repository, its own state, driver names of its own.
        other = second.dir_driver if driver == first.dir_driver else second.blk_driver
        listed = second.json("backup", "ls", f"data-{driver}", "--driver", other)
        assert [b["short_id"] for b in listed] == [made["short_id"]]
        restored = second.json(
            "backup", "restore", made["short_id"], "--to", "restored", "--driver", other
        )
        assert restored["name"] == "restored"
        again = second.cli(
            "backup", "restore", made["short_id"], "--to", "restored", "--driver", other,
            check=False,
        )  # fmt: skip
        assert again.returncode == 1 and "volume restored already exists" in again.stderr
        target = second.plugin(other).ok("Mount", Name="restored", ID="r")["Mountpoint"]
        assert _digests(target, list(written)) == written
        second.plugin(other).ok("Unmount", Name="restored", ID="r")
        second.cli("volume", "rm", "restored")
        assert first.half_made() == [] and second.half_made() == []


def test_backup_to_s3_and_restore_on_another_host(btrfs: HostFilesystem, s3: S3Server) -> None:  # noqa: F811
    bucket = unique("backups")
    nodes: list[SnapshotNode] = []
    try:
        for _ in range(2):
            root = os.path.join(btrfs.path, unique("cfg"))
            os.makedirs(root)
            nodes.append(SnapshotNode(btrfs, _s3_settings(root, s3, bucket)))
        _round_trip(*nodes, ("directory", "loopfile"))
        assert any(key.startswith("orlop/snapshots/") for key in s3.keys(bucket, "orlop/"))
    finally:
        for node in nodes:
            node.destroy()


def test_backup_over_sftp_and_restore_on_another_host(btrfs: HostFilesystem, sshd: Sshd) -> None:  # noqa: F811
    directory = unique("repo")
    nodes: list[SnapshotNode] = []
    try:
        for _ in range(2):
            root = os.path.join(btrfs.path, unique("cfg"))
            os.makedirs(root)
            nodes.append(SnapshotNode(btrfs, _sftp_settings(root, sshd, directory)))
        _round_trip(*nodes, ("directory",))  # the image path is the same over S3
        assert os.path.exists(os.path.join(sshd.data, directory, "config"))
    finally:
        for node in nodes:
            node.destroy()


def test_wrong_password_and_unreachable_repository(btrfs: HostFilesystem, s3: S3Server) -> None:  # noqa: F811
    root = os.path.join(btrfs.path, unique("cfg"))
    os.makedirs(root)
    good = SnapshotNode(btrfs, repository_settings(root))
    wrong_root = os.path.join(btrfs.path, unique("cfg"))
    os.makedirs(wrong_root)
    wrong = repository_settings(wrong_root, os.path.join(root, "repository"))
    with open(wrong["backup_password_file"], "w") as file:
        file.write("not the password\n")
    bad = SnapshotNode(btrfs, wrong)
    dead_root = os.path.join(btrfs.path, unique("cfg"))
    os.makedirs(dead_root)
    dead = SnapshotNode(
        btrfs,
        _s3_settings(dead_root, s3, "x")
        | {"backup_repository": f"s3:http://127.0.0.1:{free_port()}/nothere/x"},
    )
    try:
        good.start()
        good.plugin(good.dir_driver).ok("Create", Name="v", Opts={})
        empty = good.cli("backup", "create", "v", check=False)
        assert empty.returncode == 1 and "volume v is empty" in empty.stderr
        path = good.plugin(good.dir_driver).ok("Mount", Name="v", ID="m")["Mountpoint"]
        _fill(path)
        good.json("backup", "create", "v")
        for node, message in ((bad, "wrong password"), (dead, "is unreachable")):
            node.start()
            node.plugin(node.dir_driver).ok("Create", Name="v", Opts={})
            _fill(node.plugin(node.dir_driver).ok("Mount", Name="v", ID="m")["Mountpoint"])
            result = node.cli("backup", "create", "v", "--driver", node.dir_driver, check=False)
            assert result.returncode == 1 and message in result.stderr, result.stderr
            assert "orlop-test-repository-password" not in result.stderr + node.daemon.log()
            listed = node.cli("backup", "ls", "--driver", node.dir_driver, check=False)
            assert listed.returncode == 1 and message in listed.stderr
            assert node.half_made() == []
        missing = good.cli(
            "backup", "restore", "deadbeef", "--to", "w", "--driver", good.dir_driver, check=False
        )
        assert missing.returncode == 1 and "backup deadbeef does not exist" in missing.stderr
        assert "w" not in {v["name"] for v in good.json("volume", "ls", "--no-usage")}
    finally:
        for node in (good, bad, dead):
            node.destroy()


def test_retention_keeps_the_newest_backups(btrfs: HostFilesystem) -> None:
    root = os.path.join(btrfs.path, unique("keep"))
    os.makedirs(root)
    settings = {**repository_settings(root), "keep_last": 2}
    backend = DirectoryBackend(
        BackendContext("keep", os.path.join(root, "state"), settings=settings)
    )
    assert backend.capabilities.backup
    volume = VolumeRef("v", {})
    volume.record = backend.create(volume)
    made = []
    for number in range(3):
        with open(os.path.join(backend.mountpoint(volume), f"f{number}"), "w") as file:
            file.write(str(number))
        made.append(backend.create_backup(volume)["short_id"])
    assert [b["short_id"] for b in backend.list_backups("v")] == made[1:]
    assert backend.list_backups("other") == []


def _leave_a_stale_exclusive_lock(settings: dict[str, str]) -> str:
    """Kill -9 a restic that holds the repository's exclusive lock (a prune would): its
    lock file stays. Returns the lock's name."""
    env = {
        **os.environ,
        "RESTIC_REPOSITORY": settings["backup_repository"],
        "RESTIC_PASSWORD_FILE": settings["backup_password_file"],
    }
    locks = os.path.join(settings["backup_repository"], "locks")
    holder = subprocess.Popen(["restic", "-q", "rebuild-index"], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            written = [name for name in os.listdir(locks) if "tmp" not in name]
            if written:
                return written[0]
            time.sleep(0.002)
        raise AssertionError("restic rebuild-index never took its lock")
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_restic_does_not_stop_backups(btrfs: HostFilesystem) -> None:
    root = os.path.join(btrfs.path, unique("lock"))
    os.makedirs(root)
    settings = repository_settings(root)
    backend = DirectoryBackend(
        BackendContext("lock", os.path.join(root, "state"), settings=settings)
    )
    volume = VolumeRef("v", {})
    volume.record = backend.create(volume)
    with open(os.path.join(backend.mountpoint(volume), "data"), "w") as file:
        file.write("first")
    first = backend.create_backup(volume)["short_id"]  # the first backup makes the repository
    lock = _leave_a_stale_exclusive_lock(settings)
    assert lock in os.listdir(os.path.join(settings["backup_repository"], "locks"))

    with open(os.path.join(backend.mountpoint(volume), "data"), "w") as file:
        file.write("second")
    second = backend.create_backup(volume)["short_id"]
    assert [b["short_id"] for b in backend.list_backups("v")] == [first, second]
    assert lock not in os.listdir(os.path.join(settings["backup_repository"], "locks"))
