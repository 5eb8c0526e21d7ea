"""Azure File Storage volumes: the fake Files service (SharedKey checked) + real SMB (samba)."""

from __future__ import annotations

import base64
import contextlib
import errno
import logging
import os
import secrets
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import Backend, BackendContext
from orlop.backends.share import clients, naming
from orlop.backends.share.azurefile.api import AzureFiles
from orlop.backends.share.azurefile.backend import AzureFileBackend
from orlop.backends.share.naming import share_name
from orlop.core.model import BackendError, ConfigError, Conflict, InvalidOption, NotFound, Volume
from orlop.core.options import GIB
from orlop.host import fuse
from orlop.host.fuse import MountState
from orlop.host.mounts import mounts_under
from tests.contracts.backend import BackendConformance
from tests.contracts.hosts import SharedVolumeConformance
from tests.contracts.keep import KeepOnRemoveConformance
from tests.servers.azurefile.server import AzureFilesServer
from tests.servers.samba.server import Samba
from tests.support import network_fixtures, share_fixtures
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.share_fixtures import AzureAccount

samba = share_fixtures.samba
azure = share_fixtures.azure
unmount_all = network_fixtures.unmount_all
client_pid = network_fixtures.client_pid
fuse_client_args = network_fixtures.fuse_client_args


class TestAzureFileConformance(BackendConformance):
    create_options = {"size": "1G", "delete_on_remove": "true", "timeout": "60"}
    other_options = {"size": "2G", "delete_on_remove": "true", "timeout": "60"}
    size_limit = 1024**3

    @pytest.fixture
    def backend(self, tmp_path: Path, azure: AzureAccount) -> Iterator[AzureFileBackend]:
        context = BackendContext("azure", str(tmp_path / "driver"), settings=azure.settings())
        try:
            yield AzureFileBackend(context)
        finally:
            unmount_all(str(tmp_path))


# the volumes themselves ----------------------------------------------------------------------
def make_harness(tmp_path: Path, settings: dict[str, Any], host: str = "a") -> Harness:
    context = BackendContext("azure", str(tmp_path / host / "driver"), settings=settings)
    return Harness(AzureFileBackend(context), "azure", store_path=str(tmp_path / host / "db"))


@pytest.fixture
def harness(tmp_path: Path, azure: AzureAccount) -> Iterator[Harness]:
    harness = make_harness(tmp_path, azure.settings())
    try:
        yield harness
    finally:
        for volume in harness.service.list("azure"):
            for mount_id in list(volume.mount_ids):
                with contextlib.suppress(Exception):
                    harness.unmount(volume.name, mount_id)
        harness.close()
        unmount_all(str(tmp_path))


def api(azure: AzureAccount) -> AzureFiles:
    return AzureFiles(azure.name, azure.key, azure.server.url, 10)


def test_share_has_quota_tier_metadata_and_is_kept_by_default(
    harness: Harness, azure: AzureAccount
) -> None:
    name = f"Db.Main_{unique('v')}"
    share = share_name(name)
    assert share != name and naming.is_share_name(share)
    harness.create(name, size="1500M", access_tier="Cool", timeout="60")
    made = azure.server.shares[share]
    assert (made.quota, made.tier, made.metadata) == (2, "Cool", {"orlop_volume": name})
    path = harness.mount(name, "m1")
    Path(path, "kept").write_text("still here")
    harness.unmount(name, "m1")
    harness.remove(name)
    assert share in azure.server.shares  # keep_on_remove is the default
    # Created again (on this host or another), the volume finds its share and its data.
    harness.create(name, size="1500M", access_tier="Cool", timeout="60", delete_on_remove="true")
    path = harness.mount(name, "m2")
    assert Path(path, "kept").read_text() == "still here"
    harness.unmount(name, "m2")
    harness.remove(name)
    assert share not in azure.server.shares


def test_share_of_another_volume_is_refused(harness: Harness, azure: AzureAccount) -> None:
    other = unique("foreign")
    api(azure).create_share(other, 1, None, "someone-else")
    try:
        with pytest.raises(Conflict, match=f"share {other} exists .* holds volume someone-else"):
            harness.create(other, size="1G")
        assert harness.names() == []
    finally:
        api(azure).delete_share(other)


def test_volumes_as_directories_of_one_share(harness: Harness, azure: AzureAccount) -> None:
    common = unique("common")
    api(azure).create_share(common, 1, None, "")
    try:
        harness.create("inside", share=common, delete_on_remove="true", timeout="60")
        assert (azure.server.shares[common].path / "inside").is_dir()
        path = harness.mount("inside", "m1")
        Path(path, "sub").mkdir()
        Path(path, "sub", "f").write_bytes(b"x" * 4096)
        harness.unmount("inside", "m1")
        assert (azure.server.shares[common].path / "inside" / "sub" / "f").stat().st_size == 4096
        with pytest.raises(InvalidOption, match="its quota is the share's"):
            harness.run(harness.service.resize("azure", "inside", 2 * GIB))
        harness.remove("inside")  # deletes the tree through the REST API, one item at a time
        assert not (azure.server.shares[common].path / "inside").exists()
        assert common in azure.server.shares
        with pytest.raises(InvalidOption, match="not a share name"):
            harness.create("bad", share="Not_A_Share")
        with pytest.raises(NotFound, match="ShareNotFound"):
            harness.create("missing", share=unique("nosuch"))
        assert harness.names() == []
    finally:
        api(azure).delete_share(common)


def test_resize_raises_the_quota(harness: Harness, azure: AzureAccount) -> None:
    name = unique("grow")
    harness.create(name, size="1G", delete_on_remove="true", timeout="60")
    volume = harness.run(harness.service.resize("azure", name, 3 * GIB))
    assert azure.server.shares[name].quota == 3
    assert volume.usage is not None and volume.usage.size == 3 * GIB
    with pytest.raises(InvalidOption, match="shrinking is refused"):
        harness.run(harness.service.resize("azure", name, GIB))
    harness.remove(name)


def test_dead_mount_is_mounted_again(harness: Harness, azure: AzureAccount) -> None:
    name = unique("dead")
    harness.create(name, size="1G", delete_on_remove="true", timeout="60")
    path = harness.mount(name, "c1")
    Path(path, "before").write_text("kept")
    client = str(Path(harness.backend.mounts.clients_dir, name))  # type: ignore[attr-defined]
    os.kill(client_pid(client), signal.SIGKILL)
    deadline = time.monotonic() + 15
    while fuse.state(path) is MountState.ALIVE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fuse.state(path) is not MountState.ALIVE
    assert harness.mount(name, "c2") == path
    assert Path(path, "before").read_text() == "kept"
    harness.unmount(name, "c1")
    harness.unmount(name, "c2")
    assert mounts_under(str(Path(path).parent.parent)) == []
    harness.remove(name)


def test_append_through_smbnetfs(harness: Harness, azure: AzureAccount) -> None:
    # smbnetfs (libsmbclient) opens O_WRONLY|O_APPEND without the right to read the file's
    # size and fails it with EIO; read-write appends work. README: "Known limits".
    name = unique("append")
    harness.create(name, size="1G", delete_on_remove="true", timeout="60")
    path = harness.mount(name, "m1")
    log = Path(path, "log")
    log.write_text("one\n")
    with open(log, "a+") as appending:  # O_RDWR|O_APPEND
        appending.write("two\n")
    assert log.read_text() == "one\ntwo\n"
    # The known limit, pinned down: a write-only append fails with EIO, and the mount
    # answers again soon after (smbnetfs restarts its connection).
    with pytest.raises(OSError) as raised, open(log, "a") as appending:
        appending.write("three\n")
    assert raised.value.errno == errno.EIO
    deadline = time.monotonic() + 30
    while True:
        try:
            assert log.read_text() == "one\ntwo\n"
            break
        except OSError:
            assert time.monotonic() < deadline, "the mount did not come back"
            time.sleep(0.1)
    harness.unmount(name, "m1")
    harness.remove(name)


# bad input -----------------------------------------------------------------------------------
def test_quota_over_the_limits(harness: Harness, azure: AzureAccount, tmp_path: Path) -> None:
    with pytest.raises(InvalidOption, match="outside the sizes an Azure file share can have"):
        harness.create("huge", size="200T")
    # An account without large file shares allows 5 TiB: Azure's own refusal is reported.
    azure.server.max_quota_gib = 5120
    try:
        with pytest.raises(BackendError, match=r"InvalidHeaderValue \(HTTP 400\).*share-quota"):
            harness.create("large", size="6T")
    finally:
        azure.server.max_quota_gib = 102400
    assert harness.names() == [] and "large" not in azure.server.shares
    assert mounts_under(str(tmp_path)) == []


def test_wrong_key_is_refused_with_403(tmp_path: Path, azure: AzureAccount) -> None:
    wrong = base64.b64encode(os.urandom(64)).decode()
    settings = azure.settings(account_key=wrong)
    del settings["account_key_file"]
    harness = make_harness(tmp_path, settings)
    try:
        name = unique("wrongkey")
        with pytest.raises(BackendError, match=r"AuthenticationFailed \(HTTP 403\)") as raised:
            harness.create(name, size="1G")
        assert wrong not in str(raised.value) and azure.key not in str(raised.value)
        assert harness.names() == [] and name not in azure.server.shares
    finally:
        harness.close()
    assert mounts_under(str(tmp_path)) == []


def test_unreachable_endpoint(tmp_path: Path, azure: AzureAccount) -> None:
    harness = make_harness(tmp_path, azure.settings(endpoint="http://127.0.0.1:1"))
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"endpoint http://127\.0\.0\.1:1 is unreachable"):
            harness.create(unique("far"), size="1G", timeout="3")
        assert time.monotonic() - started < 20
        assert harness.names() == []
    finally:
        harness.close()


def test_smb_login_refused_leaves_no_share(
    tmp_path: Path, azure: AzureAccount, samba: Samba
) -> None:
    # An account whose API key works but whose SMB login fails (the key was rotated).
    account = f"orlopaz{secrets.token_hex(4)}"
    key = base64.b64encode(os.urandom(64)).decode()
    samba.add_user(account, base64.b64encode(os.urandom(64)).decode())
    server = AzureFilesServer(
        tmp_path / "other", account, key,
        on_share_created=samba.add_share, on_share_deleted=samba.remove_share,
    ).start()  # fmt: skip
    settings = {"account": account, "account_key": key, "endpoint": server.url,
                "smb_host": "127.0.0.1", "client": "fuse"}  # fmt: skip
    harness = make_harness(tmp_path, settings)
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match=f"refused the login of {account}"):
            harness.create("refused", size="1G", timeout="20")
        assert time.monotonic() - started < 40
        assert harness.names() == [] and server.shares == {}
        assert mounts_under(str(tmp_path)) == []
    finally:
        harness.close()
        server.stop()
        unmount_all(str(tmp_path))


def test_unknown_setting_and_missing_key_stop_the_driver(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown azurefile setting accout"):
        AzureFileBackend(BackendContext("az", str(tmp_path), settings={"accout": "x"}))
    with pytest.raises(ConfigError, match="needs settings account and account_key_file"):
        AzureFileBackend(BackendContext("az", str(tmp_path), settings={"account": "x"}))


# secrets ------------------------------------------------------------------------------------
def test_account_key_never_leaks(
    tmp_path: Path, azure: AzureAccount, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = azure.settings(account_key=azure.key)
    del settings["account_key_file"]
    harness = make_harness(tmp_path, settings)
    name = unique("secret")
    try:
        harness.create(name, size="1G", delete_on_remove="true", timeout="60")
        path = harness.mount(name, "m1")
        Path(path, "f").write_text("x")
        client_dir = str(Path(harness.backend.mounts.clients_dir, name))  # type: ignore[attr-defined]
        assert fuse_client_args(client_dir)
        for args in fuse_client_args(client_dir):
            assert not any(azure.key in arg for arg in args)
        config = Path(harness.backend.paths.secrets_dir, f"{name}.home", ".smb", "smbnetfs.conf")  # type: ignore[attr-defined]
        assert config.stat().st_mode & 0o077 == 0
        volume = harness.get(name)
        shown = {
            **harness.service.redacted_options(volume),
            **harness.service.backend_facts(volume),
        }
        assert azure.key not in repr(shown)
        harness.unmount(name, "m1")
        assert not config.exists()  # the client's config goes with the client
        database = sqlite3.connect(str(tmp_path / "a" / "db"))  # WAL: sees what is committed
        dump = "\n".join(database.iterdump())
        database.close()
        assert name in dump and azure.key not in dump
        for log in Path(harness.backend.paths.log_dir).iterdir():  # type: ignore[attr-defined]
            assert azure.key not in log.read_text(errors="replace")
        assert azure.key not in caplog.text
        harness.remove(name)
    finally:
        harness.close()
        unmount_all(str(tmp_path))


def test_kernel_client_where_the_kernel_has_no_cifs(harness: Harness, azure: AzureAccount) -> None:
    if clients.kernel_has("cifs")[0]:
        pytest.skip("this kernel has cifs")
    name = unique("kernel")
    with pytest.raises(InvalidOption, match="client kernel: this kernel has no cifs"):
        harness.create(name, size="1G", client="kernel")
    assert harness.names() == [] and name not in azure.server.shares


def test_owner_and_modes_through_smbnetfs(harness: Harness, azure: AzureAccount) -> None:
    name = unique("owner")
    harness.create(name, size="1G", uid="1234", gid="2345", file_mode="0640", dir_mode="0750",
                   delete_on_remove="true", timeout="60")  # fmt: skip
    path = Path(harness.mount(name, "m1"))
    (path / "d").mkdir()
    (path / "d" / "f").write_text("x")
    for item in (path / "d", path / "d" / "f"):
        stat = item.stat()
        assert (stat.st_uid, stat.st_gid) == (1234, 2345)
        assert stat.st_mode & 0o027 == 0  # FUSE 2: one umask, 0027, for both modes
    harness.unmount(name, "m1")
    harness.remove(name)


def test_smb_server_restart_while_mounted(
    harness: Harness, azure: AzureAccount, samba: Samba
) -> None:
    name = unique("restart")
    harness.create(name, size="1G", delete_on_remove="true", timeout="60")
    path = Path(harness.mount(name, "c1"))
    (path / "before").write_text("kept")
    samba.restart()  # every SMB connection drops
    deadline = time.monotonic() + 60
    while True:  # smbnetfs reconnects by itself: the same mount works again
        try:
            assert (path / "before").read_text() == "kept"
            (path / "after").write_text("written after the restart")
            break
        except OSError:
            assert time.monotonic() < deadline, "the mount never came back"
            time.sleep(0.2)
    assert harness.mount(name, "c2") == str(path)  # still alive: reused
    harness.unmount(name, "c1")
    harness.unmount(name, "c2")
    share = azure.server.shares[share_name(name)]
    assert (share.path / "after").read_text() == "written after the restart"
    harness.remove(name)


class TestAzureFileHosts(KeepOnRemoveConformance, SharedVolumeConformance):
    keep_options = {"size": "1G", "keep_on_remove": "true", "timeout": "60"}
    create_options = {"size": "1G", "delete_on_remove": "true", "timeout": "60"}
    bigger = {**create_options, "size": "2G"}

    @contextlib.contextmanager
    def slow_storage(self) -> Iterator[None]:
        self.account.server.latency = 0.03  # both hosts ask before either has made it
        try:
            yield
        finally:
            self.account.server.latency = 0.0

    @pytest.fixture
    def new_host(self, tmp_path: Path, azure: AzureAccount) -> Iterator[Any]:
        count = iter(range(100))
        self.account = azure

        def host() -> AzureFileBackend:
            state = tmp_path / f"host{next(count)}" / "driver"
            return AzureFileBackend(BackendContext("azure", str(state), {}, azure.settings()))

        try:
            yield host
        finally:
            unmount_all(str(tmp_path))

    def still_stored(self, backend: Backend, volume: Volume) -> bool:
        assert isinstance(backend, AzureFileBackend)
        try:
            backend.provider.api().properties(volume.record["share"])
        except NotFound:
            return False
        return True

    def delete_kept(self, backend: Backend, volume: Volume) -> None:
        assert isinstance(backend, AzureFileBackend)
        backend.provider.api().delete_share(volume.record["share"])


def test_a_share_another_host_made_is_adopted_with_its_real_quota_and_tier(
    tmp_path: Path, azure: AzureAccount
) -> None:
    a, b = (make_harness(tmp_path, azure.settings(), host) for host in "ab")
    name = unique("az-vol")
    try:
        a.create(name, size="5G", access_tier="Hot", delete_on_remove="true", timeout="60")
        b.run(b.service.discover("azure"))
        assert (b.get(name).options["size"], b.get(name).options["access_tier"]) == (
            str(5 * GIB),
            "Hot",
        )
        b.create(name, size="5G")  # the same size as host A used: accepted
        with pytest.raises(Conflict, match="different options"):
            b.create(name, size="6G")
        a.remove(name)
    finally:
        a.close()
        b.close()
        unmount_all(str(tmp_path))


def test_keep_on_remove_false_deletes_the_share(harness: Harness, azure: AzureAccount) -> None:
    name = unique("gone")
    harness.create(name, size="1G", keep_on_remove="false", timeout="60")
    assert share_name(name) in azure.server.shares
    harness.remove(name)
    assert share_name(name) not in azure.server.shares  # one option, one meaning
    for contradiction in ({"delete_on_remove": "true", "keep_on_remove": "true"},
                          {"delete_on_remove": "false", "keep_on_remove": "false"}):  # fmt: skip
        with pytest.raises(InvalidOption, match="contradict"):
            harness.create(name, size="1G", **contradiction)
    assert harness.names() == []
