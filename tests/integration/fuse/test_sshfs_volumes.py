"""sshfs volumes against a real sshd: credentials, bad input, dead mounts, two hosts."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.fuse.sshfs import SshfsBackend
from orlop.core.model import BackendError, InvalidOption
from orlop.host import fuse
from orlop.host.fuse import MountState
from orlop.host.mounts import mounts_under
from tests.servers.sshd.server import Sshd, silent_listener
from tests.support import network_fixtures
from tests.support.harness import Harness
from tests.support.names import unique

# Session servers, shared with the other network test modules.
sshd = network_fixtures.sshd
running_sshd = network_fixtures.running_sshd
unmount_all = network_fixtures.unmount_all
client_pid = network_fixtures.client_pid
fuse_client_args = network_fixtures.fuse_client_args


@pytest.fixture
def base(running_sshd: Sshd) -> Path:
    directory = running_sshd.data / unique("vols")
    directory.mkdir()
    return directory


def make_harness(
    tmp_path: Path, host: str = "a", settings: dict[str, str] | None = None
) -> Harness:
    backend = SshfsBackend(
        BackendContext("ssh", str(tmp_path / host / "driver"), settings=settings or {})
    )
    return Harness(backend, "ssh", store_path=str(tmp_path / host / "orlop.db"))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = make_harness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()
        unmount_all(str(tmp_path))


def test_volume_is_a_directory_on_the_server(
    harness: Harness, running_sshd: Sshd, base: Path
) -> None:
    volume = harness.create("data", **running_sshd.options(path=str(base)))
    assert (base / "data").is_dir()
    assert harness.backend.capabilities.scope == "global"
    assert volume.record["remote"].endswith(f"{base}/data")
    path = harness.mount("data", "m1")
    Path(path, "hello.txt").write_text("from the container")
    assert (base / "data" / "hello.txt").read_text() == "from the container"
    harness.unmount("data", "m1")
    assert mounts_under(path) == []
    harness.remove("data")
    assert not (base / "data").exists()


def test_share_mounts_path_itself_and_remove_keeps_it(
    harness: Harness, running_sshd: Sshd, base: Path
) -> None:
    (base / "existing").write_text("shared data")
    harness.create("shared", **running_sshd.options(path=str(base), share="true"))
    path = harness.mount("shared", "m1")
    assert Path(path, "existing").read_text() == "shared data"
    harness.unmount("shared", "m1")
    harness.remove("shared")
    assert (base / "existing").read_text() == "shared data"


def test_readonly_refuses_writes(harness: Harness, running_sshd: Sshd, base: Path) -> None:
    harness.create("ro", **running_sshd.options(path=str(base), readonly="true"))
    path = harness.mount("ro", "m1")
    with pytest.raises(OSError) as raised:
        Path(path, "nope").write_text("x")
    assert raised.value.errno == errno.EROFS
    harness.unmount("ro", "m1")


def test_password_file_and_no_secret_leaks(
    harness: Harness, running_sshd: Sshd, tmp_path: Path
) -> None:
    user, password = running_sshd.add_password_user()
    password_file = tmp_path / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    options = running_sshd.options(path="", user=user, password_file=str(password_file))
    del options["identity"]
    harness.create("pw", **options)
    path = harness.mount("pw", "m1")
    Path(path, "file").write_text("written with a password")
    assert Path(running_sshd.root, "home", "pw", "file").read_text() == "written with a password"
    # Never on a command line, in Status, the store or the driver's files.
    for args in fuse_client_args(path):
        assert not any(password in arg for arg in args)
    status = harness.service.redacted_options(harness.get("pw"))
    status.update(harness.service.backend_facts(harness.get("pw")))
    assert password not in repr(status)
    harness.unmount("pw", "m1")
    harness.store.close()
    database = sqlite3.connect(harness.store_path)
    dump = "\n".join(database.iterdump())
    database.close()
    assert password not in dump
    for root, _dirs, files in os.walk(tmp_path / "a"):
        for name in files:
            assert password.encode() not in Path(root, name).read_bytes(), name


def test_password_and_key_from_driver_settings(tmp_path: Path, running_sshd: Sshd) -> None:
    user, password = running_sshd.add_password_user()
    harness = make_harness(tmp_path, "settings", settings={"password": password})
    try:
        options = running_sshd.options(path="", user=user)
        del options["identity"]
        harness.create("via-settings", **options)
        path = harness.mount("via-settings", "m1")
        Path(path, "f").write_text("ok")
        harness.unmount("via-settings", "m1")
        harness.remove("via-settings")
    finally:
        harness.close()
        unmount_all(str(tmp_path))
    key = Path(running_sshd.client_key).read_text()
    keyed = make_harness(tmp_path, "keyed", settings={"private_key": key})
    try:
        options = running_sshd.options(path=str(running_sshd.data))
        del options["identity"]
        keyed.create(unique("k"), **options)
        secret_file = Path(keyed.backend.paths.secrets_dir, "identity")
        assert secret_file.stat().st_mode & 0o077 == 0
    finally:
        keyed.close()
        unmount_all(str(tmp_path))


def test_known_hosts_from_driver_settings(tmp_path: Path, running_sshd: Sshd) -> None:
    # A managed plugin sees no host files: the known_hosts lines come as a setting.
    options = running_sshd.options(path=str(running_sshd.data), timeout="5")
    del options["known_hosts"]
    trusted = Path(running_sshd.known_hosts).read_text()
    harness = make_harness(tmp_path, "trusting", settings={"known_hosts": trusted})
    try:
        name = unique("kh")
        harness.create(name, **options)
        Path(harness.mount(name, "m1"), "f").write_text("ok")
        harness.unmount(name, "m1")
        harness.remove(name)
    finally:
        harness.close()
        unmount_all(str(tmp_path))
    stranger = (
        f"[127.0.0.1]:{running_sshd.port} " + Path(f"{running_sshd.other_key}.pub").read_text()
    )
    wary = make_harness(tmp_path, "wary", settings={"known_hosts": stranger})
    try:
        with pytest.raises(BackendError, match="Host key verification failed"):
            wary.create(unique("kh"), **options)
        assert wary.names() == []
    finally:
        wary.close()
        unmount_all(str(tmp_path))


@pytest.mark.parametrize(
    "problem, expected",
    [
        ("wrong key", "Permission denied"),
        ("wrong password", "Permission denied"),
        ("unknown host key", "Host key verification failed"),
        ("refused", "Connection refused"),
        ("hung server", "timed out"),
    ],
)
def test_bad_input_fails_create_within_timeout_and_leaves_nothing(
    harness: Harness,
    running_sshd: Sshd,
    tmp_path: Path,
    problem: str,
    expected: str,
) -> None:
    options = running_sshd.options(timeout="3")
    if problem == "wrong key":
        options["identity"] = str(running_sshd.other_key)
    elif problem == "wrong password":
        wrong = tmp_path / "wrong-password"
        wrong.write_text("not-the-password")
        del options["identity"]
        options["password_file"] = str(wrong)
    elif problem == "unknown host key":
        other = tmp_path / "known_hosts"
        other.write_text(
            f"[127.0.0.1]:{running_sshd.port} " + Path(f"{running_sshd.other_key}.pub").read_text()
        )
        options["known_hosts"] = str(other)
    elif problem == "refused":
        options["port"] = "1"
    started = time.monotonic()
    with silent_listener() as silent_port:
        if problem == "hung server":
            options["port"] = str(silent_port)
        with pytest.raises(BackendError, match=expected) as raised:
            harness.create("bad", **options)
    assert time.monotonic() - started < 3 + 10
    assert "not-the-password" not in str(raised.value)
    assert harness.names() == []
    assert mounts_under(str(tmp_path)) == []


def test_missing_host_is_refused(harness: Harness) -> None:
    with pytest.raises(InvalidOption, match="option host is required"):
        harness.create("nohost", user="root")
    assert harness.names() == []


def test_dead_mount_is_remounted_on_next_mount(
    harness: Harness, running_sshd: Sshd, base: Path
) -> None:
    harness.create("dead", **running_sshd.options(path=str(base)))
    path = harness.mount("dead", "c1")
    Path(path, "before").write_text("kept")
    os.kill(client_pid(path), signal.SIGKILL)  # the client dies; the kernel mount stays
    deadline = time.monotonic() + 10
    while fuse.state(path) is not MountState.DEAD and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fuse.state(path) is MountState.DEAD
    assert harness.mount("dead", "c2") == path
    assert fuse.state(path) is MountState.ALIVE
    assert Path(path, "before").read_text() == "kept"
    harness.unmount("dead", "c1")
    harness.unmount("dead", "c2")
    assert mounts_under(path) == []


def test_server_restart_while_mounted(harness: Harness, running_sshd: Sshd, base: Path) -> None:
    harness.create("bounce", **running_sshd.options(path=str(base)))
    path = harness.mount("bounce", "c1")
    Path(path, "before").write_text("kept")
    running_sshd.stop()
    with pytest.raises(OSError):
        os.listdir(path)  # the connection is gone: the mount fails or disappears
    running_sshd.start()
    assert harness.mount("bounce", "c2") == path
    assert Path(path, "before").read_text() == "kept"
    Path(path, "after").write_text("new")
    assert (base / "bounce" / "after").read_text() == "new"
    harness.unmount("bounce", "c1")
    harness.unmount("bounce", "c2")


def test_two_hosts_see_the_same_volume(tmp_path: Path, running_sshd: Sshd, base: Path) -> None:
    first, second = make_harness(tmp_path, "a"), make_harness(tmp_path, "b")
    try:
        options = running_sshd.options(path=str(base))
        first.create("both", **options)
        second.create("both", **options)  # the same name on another host: the same data
        path = first.mount("both", "m1")
        payload = os.urandom(3 * 1024 * 1024)
        Path(path, "blob").write_bytes(payload)
        first.unmount("both", "m1")
        other = second.mount("both", "m2")
        assert Path(other, "blob").read_bytes() == payload
        second.unmount("both", "m2")
    finally:
        first.close()
        second.close()
        unmount_all(str(tmp_path))
