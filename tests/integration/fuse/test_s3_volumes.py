"""S3 volumes against a real S3 server (moto): layout, uploads before unmount, bad input."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.fuse.s3 import S3Backend
from orlop.core.model import BackendError, InvalidOption
from orlop.host import fuse
from orlop.host.fuse import MountState
from orlop.host.mounts import mounts_under
from tests.servers.s3.server import ACCESS_KEY, SECRET_KEY, S3Server, not_s3_server
from tests.support import network_fixtures
from tests.support.harness import Harness
from tests.support.names import unique

# Session servers, shared with the other network test modules.
s3 = network_fixtures.s3
unmount_all = network_fixtures.unmount_all
client_pid = network_fixtures.client_pid
fuse_client_args = network_fixtures.fuse_client_args


def make_harness(
    tmp_path: Path, host: str = "a", settings: dict[str, str] | None = None
) -> Harness:
    context = BackendContext("s3", str(tmp_path / host / "driver"), settings=settings or {})
    return Harness(S3Backend(context), "s3", store_path=str(tmp_path / host / "orlop.db"))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = make_harness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()
        unmount_all(str(tmp_path))


@pytest.fixture
def prefix() -> str:
    return unique("p")


def test_volume_is_a_prefix_and_objects_stay_by_default(
    harness: Harness, s3: S3Server, prefix: str
) -> None:
    volume = harness.create("data", **s3.options("volumes", prefix=prefix))
    assert volume.record == {"bucket": "volumes", "key": f"{prefix}/data"}
    assert harness.backend.capabilities.scope == "global"
    path = harness.mount("data", "m1")
    Path(path, "dir").mkdir()
    Path(path, "dir", "file.txt").write_text("hello s3")
    harness.unmount("data", "m1")
    assert s3.keys("volumes", prefix) == {f"{prefix}/data/dir/file.txt": 8}
    harness.remove("data")
    assert s3.keys("volumes", prefix) == {f"{prefix}/data/dir/file.txt": 8}  # kept


def test_delete_on_remove_deletes_the_objects(harness: Harness, s3: S3Server, prefix: str) -> None:
    harness.create("gone", **s3.options("volumes", prefix=prefix, delete_on_remove="true"))
    path = harness.mount("gone", "m1")
    Path(path, "a").write_bytes(b"x" * 1000)
    harness.unmount("gone", "m1")
    assert s3.keys("volumes", prefix)
    harness.remove("gone")
    assert s3.keys("volumes", prefix) == {}


def test_bucket_per_volume_is_created_on_demand(harness: Harness, s3: S3Server) -> None:
    name = unique("v").lower()
    harness.create(name, **s3.options("orlop", bucket_per_volume="true", delete_on_remove="true"))
    bucket = f"orlop-{name}"
    assert bucket in {b["Name"] for b in s3.client().list_buckets()["Buckets"]}
    path = harness.mount(name, "m1")
    Path(path, "f").write_text("own bucket")
    harness.unmount(name, "m1")
    assert s3.keys(bucket) == {"f": 10}
    harness.remove(name)
    assert bucket not in {b["Name"] for b in s3.client().list_buckets()["Buckets"]}


def test_bucket_per_volume_needs_a_bucket_name(harness: Harness, s3: S3Server) -> None:
    with pytest.raises(InvalidOption, match="must make a valid bucket name"):
        harness.create("Upper_Case", **s3.options("orlop", bucket_per_volume="true"))
    assert harness.names() == []


def test_unmount_answers_after_uploads_and_another_host_reads_all(
    tmp_path: Path, s3: S3Server, prefix: str
) -> None:
    writer, reader = make_harness(tmp_path, "a"), make_harness(tmp_path, "b")
    try:
        options = s3.options("volumes", prefix=prefix)
        writer.create("handoff", **options)
        reader.create("handoff", **options)
        path = writer.mount("handoff", "w")
        digests = {}
        for index in range(8):
            payload = os.urandom(6 * 1024 * 1024 + index)
            Path(path, f"part-{index}").write_bytes(payload)
            digests[f"part-{index}"] = hashlib.sha256(payload).hexdigest()
        writer.unmount("handoff", "w")
        # The moment Unmount answers, every object is in S3 at full size...
        keys = s3.keys("volumes", f"{prefix}/handoff/")
        assert {k.rsplit("/", 1)[1]: size for k, size in keys.items()} == {
            f"part-{i}": 6 * 1024 * 1024 + i for i in range(8)
        }
        # ...and another host reads every byte.
        other = reader.mount("handoff", "r")
        for name, digest in digests.items():
            assert hashlib.sha256(Path(other, name).read_bytes()).hexdigest() == digest
        reader.unmount("handoff", "r")
    finally:
        writer.close()
        reader.close()
        unmount_all(str(tmp_path))


def test_credentials_from_settings_never_leak(tmp_path: Path, s3: S3Server, prefix: str) -> None:
    harness = make_harness(
        tmp_path, "settings", {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
    )
    try:
        options = s3.options("volumes", prefix=prefix)
        del options["credentials_file"]
        harness.create("secret", **options)
        path = harness.mount("secret", "m1")
        Path(path, "f").write_text("x")
        for args in fuse_client_args(path):
            assert not any(SECRET_KEY in arg for arg in args)
        volume = harness.get("secret")
        shown = {
            **harness.service.redacted_options(volume),
            **harness.service.backend_facts(volume),
        }
        assert SECRET_KEY not in repr(shown)
        config = Path(harness.backend.paths.secrets_dir, "secret.rclone.conf")
        assert config.stat().st_mode & 0o077 == 0
        harness.unmount("secret", "m1")
        harness.store.close()
        database = sqlite3.connect(harness.store_path)
        assert SECRET_KEY not in "\n".join(database.iterdump())
        database.close()
        for log in Path(harness.backend.paths.log_dir).iterdir():
            assert SECRET_KEY not in log.read_text(errors="replace")
    finally:
        harness.close()
        unmount_all(str(tmp_path))


def test_dead_mount_is_remounted_on_next_mount(harness: Harness, s3: S3Server, prefix: str) -> None:
    harness.create("dead", **s3.options("volumes", prefix=prefix))
    path = harness.mount("dead", "c1")
    Path(path, "before").write_text("kept")
    harness.unmount("dead", "c1")
    path = harness.mount("dead", "c2")
    os.kill(client_pid(path), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while fuse.state(path) is not MountState.DEAD and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fuse.state(path) is MountState.DEAD
    assert harness.mount("dead", "c3") == path
    assert Path(path, "before").read_text() == "kept"
    harness.unmount("dead", "c2")
    harness.unmount("dead", "c3")
    assert mounts_under(path) == []


def test_unreachable_endpoint(harness: Harness, s3: S3Server, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"could not be created or reached.*connection refused"):
        harness.create("bad", **s3.options("volumes", endpoint="http://127.0.0.1:1", timeout="3"))
    assert time.monotonic() - started < 3 * 3 + 5
    assert harness.names() == []
    assert mounts_under(str(tmp_path)) == []


def test_endpoint_that_is_not_s3(harness: Harness, s3: S3Server, tmp_path: Path) -> None:
    with not_s3_server() as url, pytest.raises(BackendError, match="not S3"):
        harness.create("bad", **s3.options("volumes", endpoint=url, timeout="3"))
    assert harness.names() == []
    assert mounts_under(str(tmp_path)) == []


def test_bucket_that_cannot_be_created(harness: Harness, tmp_path: Path) -> None:
    refusing = S3Server(enforce_auth=True).start()
    try:
        with pytest.raises(
            BackendError, match=r"bucket locked at .* could not be created.*(Access|Key)"
        ):
            harness.create("bad", **refusing.options("locked", timeout="3"))
    finally:
        refusing.destroy()
    assert harness.names() == []
    assert mounts_under(str(tmp_path)) == []


def test_missing_bucket_and_bad_credentials_file(
    harness: Harness, s3: S3Server, tmp_path: Path
) -> None:
    with pytest.raises(InvalidOption, match="option bucket is required"):
        harness.create("nobucket", endpoint=s3.endpoint)
    broken = tmp_path / "credentials"
    broken.write_text("[other]\naws_access_key_id = x\n")
    with pytest.raises(InvalidOption, match=r"no section \[default\]"):
        harness.create("badcreds", **s3.options("volumes", credentials_file=str(broken)))
    assert harness.names() == []


def test_many_small_files_are_all_uploaded_before_unmount_answers(
    harness: Harness, s3: S3Server, prefix: str
) -> None:
    # Closing a file only queues FUSE's release: with hundreds queued at once, an unmount
    # that does not wait for the kernel's queue to drain loses the files still in it.
    harness.create("many", **s3.options("volumes", prefix=prefix))
    path = harness.mount("many", "m1")
    for index in range(600):
        Path(path, f"f{index:04d}").write_bytes(index.to_bytes(4, "big") * 2048)
    harness.unmount("many", "m1")
    keys = s3.keys("volumes", f"{prefix}/many/")
    assert len(keys) == 600
    assert set(keys.values()) == {8192}
