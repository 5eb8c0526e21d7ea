"""PowerScale volumes: the TLS fake OneFS API (session + CSRF) and real SMB through samba."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.share.powerscale.backend import PowerScaleBackend
from orlop.core.model import BackendError, ConfigError, InvalidOption
from orlop.host.mounts import mounts_under
from tests.contracts.backend import BackendConformance
from tests.support import network_fixtures, share_fixtures
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.share_fixtures import PowerScaleCluster

samba = share_fixtures.samba
powerscale = share_fixtures.powerscale
unmount_all = network_fixtures.unmount_all
fuse_client_args = network_fixtures.fuse_client_args
MIB = 1024**2


class TestPowerScaleConformance(BackendConformance):
    create_options = {"size": "64M", "protocol": "smb", "timeout": "60"}
    other_options = {"size": "128M", "protocol": "smb", "timeout": "60"}
    size_limit = 64 * MIB

    @pytest.fixture
    def backend(self, tmp_path: Path, powerscale: PowerScaleCluster) -> Iterator[PowerScaleBackend]:
        settings = powerscale.settings(base_path=f"/ifs/{unique('conf')}")
        context = BackendContext("isi", str(tmp_path / "driver"), settings=settings)
        try:
            yield PowerScaleBackend(context)
        finally:
            unmount_all(str(tmp_path))


def make_harness(tmp_path: Path, settings: dict[str, Any], host: str = "a") -> Harness:
    context = BackendContext("isi", str(tmp_path / host / "driver"), settings=settings)
    return Harness(PowerScaleBackend(context), "isi", store_path=str(tmp_path / host / "db"))


@pytest.fixture
def base() -> str:
    return f"/ifs/{unique('vols')}"


@pytest.fixture
def harness(tmp_path: Path, powerscale: PowerScaleCluster, base: str) -> Iterator[Harness]:
    harness = make_harness(tmp_path, powerscale.settings(base_path=base))
    try:
        yield harness
    finally:
        for volume in harness.service.list("isi"):
            for mount_id in list(volume.mount_ids):
                with contextlib.suppress(Exception):
                    harness.unmount(volume.name, mount_id)
        harness.close()
        unmount_all(str(tmp_path))


def test_volume_is_directory_quota_and_share(
    harness: Harness, powerscale: PowerScaleCluster, base: str
) -> None:
    cluster = powerscale.server
    volume = harness.create("Data.1", size="32M", protocol="smb", timeout="60")
    path = f"{base}/Data.1"
    assert volume.record["path"] == path
    quota = cluster.quotas[volume.record["quota_id"]]
    assert (quota["path"], quota["type"], quota["thresholds"]["hard"]) == (
        path, "directory", 32 * MIB
    )  # fmt: skip
    assert cluster.smb_shares[volume.record["smb_share"]]["path"] == path
    mountpoint = harness.mount("Data.1", "m1")
    Path(mountpoint, "f").write_bytes(b"x" * MIB)
    assert Path(cluster.local(path), "f").stat().st_size == MIB
    refreshed = harness.run(harness.service.refresh_usage("isi", "Data.1"))
    assert refreshed.usage is not None and refreshed.usage.size == 32 * MIB
    assert refreshed.usage.used >= MIB
    harness.unmount("Data.1", "m1")
    grown = harness.run(harness.service.resize("isi", "Data.1", 48 * MIB))
    assert cluster.quotas[volume.record["quota_id"]]["thresholds"]["hard"] == 48 * MIB
    assert grown.usage is not None and grown.usage.size == 48 * MIB
    with pytest.raises(InvalidOption, match="shrinking is refused"):
        harness.run(harness.service.resize("isi", "Data.1", 16 * MIB))
    harness.remove("Data.1")
    assert cluster.smb_shares == {} or volume.record["smb_share"] not in cluster.smb_shares
    assert volume.record["quota_id"] not in cluster.quotas
    assert not Path(cluster.local(path)).exists()


def test_keep_on_remove_and_adoption_by_another_host(
    tmp_path: Path, powerscale: PowerScaleCluster, base: str
) -> None:
    settings = powerscale.settings(base_path=base)
    first, second = make_harness(tmp_path, settings, "a"), make_harness(tmp_path, settings, "b")
    options = {"size": "32M", "protocol": "smb", "timeout": "60", "keep_on_remove": "true"}
    try:
        made = first.create("kept", **options)
        path = first.mount("kept", "m1")
        Path(path, "hello").write_text("from a")
        first.unmount("kept", "m1")
        adopted = second.create("kept", **options)  # finds directory, quota and share
        assert adopted.record == {**made.record, "keep": True}
        assert Path(second.mount("kept", "m1"), "hello").read_text() == "from a"
        second.unmount("kept", "m1")
        first.remove("kept")
        assert made.record["quota_id"] in powerscale.server.quotas  # kept
        second.run(second.service.remove("isi", "kept"))
    finally:
        first.close()
        second.close()
        unmount_all(str(tmp_path))
    # clean up what keep_on_remove kept: only on purpose, with keep_on_remove=false
    cleaner = make_harness(tmp_path, settings, "c")
    try:
        cleaner.create("kept", size="32M", protocol="smb", timeout="60", keep_on_remove="false")
        cleaner.remove("kept")
        assert made.record["quota_id"] not in powerscale.server.quotas
    finally:
        cleaner.close()
        unmount_all(str(tmp_path))


def test_snapshots(harness: Harness, powerscale: PowerScaleCluster) -> None:
    harness.create("snappy", size="32M", protocol="smb", timeout="60")
    path = harness.mount("snappy", "m1")
    Path(path, "v").write_text("one")
    snapshot = harness.run(harness.service.create_snapshot("isi", "snappy", unique("snap")))
    assert snapshot["volume"] == "snappy" and snapshot["state"] == "active"
    copy = powerscale.server.root / "snapshots" / snapshot["id"] / "v"
    assert copy.read_text() == "one"
    listed = harness.run(harness.service.list_snapshots("isi", "snappy"))
    assert [s["name"] for s in listed] == [snapshot["name"]]
    harness.run(harness.service.delete_snapshot("isi", snapshot["name"]))
    assert harness.run(harness.service.list_snapshots("isi", "snappy")) == []
    harness.unmount("snappy", "m1")
    harness.remove("snappy")


# bad input ---------------------------------------------------------------------------------
def test_nfs_cannot_mount_here_and_leaves_nothing(
    harness: Harness, powerscale: PowerScaleCluster, tmp_path: Path
) -> None:
    # This host's kernel has no nfs: Create makes directory, quota and export, fails to
    # prove the mount, and undoes all three.
    cluster = powerscale.server
    before = (len(cluster.quotas), len(cluster.exports))
    with pytest.raises(InvalidOption, match="NFS needs the kernel's nfs client"):
        harness.create("nfsvol", size="32M", protocol="nfs", clients="10.0.0.0/8")
    assert (len(cluster.quotas), len(cluster.exports)) == before
    assert harness.names() == []
    assert mounts_under(str(tmp_path)) == []


def test_quota_over_the_cluster_limit(
    harness: Harness, powerscale: PowerScaleCluster, base: str
) -> None:
    with pytest.raises(BackendError, match="exceeds the cluster's limit"):
        harness.create("huge", size="1100T", protocol="smb")
    assert harness.names() == []
    assert not Path(powerscale.server.local(f"{base}/huge")).exists()


def test_options_refused(harness: Harness) -> None:
    with pytest.raises(InvalidOption, match="NFS options, but protocol is smb"):
        harness.create("x", protocol="smb", nfs_version="3")
    with pytest.raises(InvalidOption, match="protocol"):
        harness.create("x", protocol="afp")
    with pytest.raises(InvalidOption, match="1M or more"):
        harness.create("x", size="10K")
    assert harness.names() == []


def test_wrong_password(tmp_path: Path, powerscale: PowerScaleCluster, base: str) -> None:
    harness = make_harness(tmp_path, powerscale.settings(base_path=base, password="wrong"))
    provider = harness.backend.provider  # type: ignore[attr-defined]
    provider.settings = provider.settings.model_copy(update={"password_file": None})
    provider._password = "wrong"
    try:
        with pytest.raises(BackendError, match=r"refused .* \(HTTP 401\); check username"):
            harness.create("v", size="32M", protocol="smb")
        assert harness.names() == []
    finally:
        harness.close()


def test_unreachable_cluster(tmp_path: Path, powerscale: PowerScaleCluster) -> None:
    harness = make_harness(tmp_path, powerscale.settings(url="https://127.0.0.1:1"))
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match="is unreachable"):
            harness.create("v", size="32M", protocol="smb", timeout="3")
        assert time.monotonic() - started < 20
    finally:
        harness.close()


def test_settings_refused(tmp_path: Path, powerscale: PowerScaleCluster) -> None:
    misspelt = {**powerscale.settings(), "pasword": "x"}
    with pytest.raises(ConfigError, match="unknown powerscale setting"):
        PowerScaleBackend(BackendContext("i", str(tmp_path), settings=misspelt))
    plain = powerscale.settings(url="http://127.0.0.1:8080")
    with pytest.raises(ConfigError, match="must start with https://"):
        PowerScaleBackend(BackendContext("i", str(tmp_path), settings=plain))


def test_password_never_leaks(
    tmp_path: Path, powerscale: PowerScaleCluster, caplog: pytest.LogCaptureFixture, base: str
) -> None:
    caplog.set_level(logging.DEBUG)
    harness = make_harness(tmp_path, powerscale.settings(base_path=base))
    secret = powerscale.password
    try:
        harness.create("sec", size="32M", protocol="smb", timeout="60")
        path = harness.mount("sec", "m1")
        Path(path, "f").write_text("x")
        client_dir = str(Path(harness.backend.mounts.clients_dir, "sec"))  # type: ignore[attr-defined]
        assert fuse_client_args(client_dir)
        for args in fuse_client_args(client_dir):
            assert not any(secret in arg for arg in args)
        volume = harness.get("sec")
        shown = {
            **harness.service.redacted_options(volume),
            **harness.service.backend_facts(volume),
        }
        assert secret not in repr(shown)
        database = sqlite3.connect(str(tmp_path / "a" / "db"))
        dump = "\n".join(database.iterdump())
        database.close()
        assert "sec" in dump and secret not in dump
        harness.unmount("sec", "m1")
        for log in Path(harness.backend.paths.log_dir).iterdir():  # type: ignore[attr-defined]
            assert secret not in log.read_text(errors="replace")
        assert secret not in caplog.text
        harness.remove("sec")
    finally:
        harness.close()
        unmount_all(str(tmp_path))
