"""The Cinder provider against the REAL Cinder (API, scheduler, volume service, SQLite) and
our Nova: create, find by metadata, attach with a real device, resize, snapshots, clones,
and every way a user's mistake or a broken cloud is reported."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.api import (
    LABEL_CLAIM,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
    LABEL_TOKEN,
    LABEL_VOLUME,
    CloudError,
    Disk,
    DiskSpec,
    ErrorKind,
)
from orlop.backends.cloud.cinder.provider import CinderProvider
from orlop.backends.cloud.cinder.settings import CinderSettings
from orlop.core.model import Conflict, InvalidOption, NotFound
from tests.contracts.cloud import CloudDiskConformance, backend_for
from tests.servers.cinder.testbed import GIB, CinderTestbed
from tests.support.names import unique

pytest_plugins = ["tests.servers.cinder.fixtures"]
# openstacksdk warns of its own future changes (PendingDeprecationWarning) on every call
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(0.1)


def spec(testbed: CinderTestbed, volume: str, **options: str) -> DiskSpec:
    token = unique("tok")
    labels = {
        LABEL_MANAGED: "orlop",
        LABEL_NAMESPACE: testbed.namespace,
        LABEL_VOLUME: volume,
        LABEL_TOKEN: token,
    }
    return DiskSpec(volume, testbed.namespace, labels, token, {"size": str(GIB), **options})


def ready(provider: CinderProvider, disk_id: str) -> Disk:
    return eventually(
        lambda: (d := provider.get_disk(disk_id)) and d.state == "ready" and d,
        what=f"volume {disk_id} to be ready",
    )


def status(provider: CinderProvider, disk_id: str, wanted: str) -> Disk:
    return eventually(
        lambda: (d := provider.get_disk(disk_id)) and d.facts["status"] == wanted and d,
        what=f"volume {disk_id} to be {wanted}",
    )


@pytest.fixture
def provider(cinder_testbed: CinderTestbed) -> CinderProvider:
    return cinder_testbed.provider(cinder_testbed.host())


def test_create_get_find_labels(cinder_testbed: CinderTestbed, provider: CinderProvider) -> None:
    identity = provider.identity()  # from the metadata service
    assert identity.instance == cinder_testbed.hosts[0].instance
    name = "Db.Main_1-" + "x" * 200  # Docker's capitals, dots, long names: raw in metadata
    asked = spec(cinder_testbed, name)
    disk = provider.create_disk(asked, identity)
    assert provider.create_disk(asked, identity).id == disk.id  # same token: one volume
    disk = ready(provider, disk.id)
    assert disk.size == GIB and disk.volume == name and disk.facts["type"] == "__DEFAULT__"
    [found] = provider.find_disks(cinder_testbed.namespace, name)
    assert found.id == disk.id and found.labels[LABEL_MANAGED] == "orlop"
    assert provider.find_disks(cinder_testbed.namespace, "other") == []
    assert provider.find_disks(unique("ns")) == []  # another namespace sees nothing
    provider.set_labels(disk, {LABEL_CLAIM: "i-1 nonce"})
    assert provider.get_disk(disk.id).labels[LABEL_CLAIM] == "i-1 nonce"  # type: ignore[union-attr]
    provider.set_labels(disk, {LABEL_CLAIM: None, "absent": None})
    assert LABEL_CLAIM not in provider.get_disk(disk.id).labels  # type: ignore[union-attr]
    [cloud] = cinder_testbed.cloud_disks(cinder_testbed.namespace)
    assert cloud["metadata"]["orlop-volume"] == name  # what Cinder itself holds
    assert provider.options_of(disk) == {
        "size": str(GIB),
        "type": "__DEFAULT__",
        "availability_zone": "nova",
    }
    provider.delete_disk(disk)
    eventually(lambda: provider.get_disk(disk.id) is None, what="the delete")
    provider.delete_disk(disk)  # already gone: not an error


def test_attach_refuse_extend_detach(cinder_testbed: CinderTestbed) -> None:
    host = cinder_testbed.host()
    first, second = cinder_testbed.provider(host), cinder_testbed.provider(cinder_testbed.host())
    one, two = first.identity(), second.identity()
    disk = ready(first, first.create_disk(spec(cinder_testbed, "att"), one).id)
    first.resize_disk(disk, 2 * GIB)  # extend while available
    disk = eventually(lambda: (d := first.get_disk(disk.id)) and d.size == 2 * GIB and d)
    first.resize_disk(disk, GIB)  # never shrinks: nothing asked of Cinder

    first.attach_disk(disk, one, first.device_name(disk, one))
    # Cinder refuses a second attachment at once, while the first is only reserved, and
    # again once it is in use; the error names the holder
    for _ in ("attaching", "in-use"):
        with pytest.raises(CloudError) as refused:
            second.attach_disk(disk, two, None)
        assert refused.value.kind is ErrorKind.IN_USE
        assert refused.value.holder == one.instance and one.instance in str(refused.value)
        disk = status(first, disk.id, "in-use")
    assert [d["attached_to"] for d in cinder_testbed.cloud_disks(cinder_testbed.namespace)] == [
        [one.instance]
    ]
    attachment = disk.attached_to(one.instance)
    assert attachment is not None and attachment.state == "attached"
    path = first.device_paths(disk, attachment)[0]
    assert path == f"{host.settings['by_id_dir']}/virtio-{disk.id[:20]}"
    device = eventually(lambda: os.path.exists(path) and os.path.realpath(path), what=path)
    assert device.startswith("/dev/loop") and _device_size(path) == 2 * GIB

    first.resize_disk(disk, 3 * GIB - 5)  # in use; rounded up to whole GiB
    eventually(lambda: (d := first.get_disk(disk.id)) and d.size == 3 * GIB, what="extend")
    # Cinder told Nova (volume-extended), Nova told the guest: the device grew
    eventually(lambda: _device_size(path) == 3 * GIB, what="the device to grow")

    first.detach_disk(disk, one.instance)
    disk = status(first, disk.id, "available")
    assert disk.attachments == [] and not os.path.exists(path)
    first.detach_disk(disk, one.instance)  # not attached: nothing to do

    # the VM is deleted, its attachment is not: another host ends it with force
    first.attach_disk(disk, one, None)
    status(first, disk.id, "in-use")
    cinder_testbed.nova.servers.pop(host.instance)
    second.detach_disk(disk, host.instance, force=True)
    assert status(second, disk.id, "available").attachments == []
    assert CinderProvider.refuses_second_attach


def test_snapshots_and_clones(cinder_testbed: CinderTestbed, provider: CinderProvider) -> None:
    identity = provider.identity()
    disk = ready(provider, provider.create_disk(spec(cinder_testbed, "src"), identity).id)
    labels = {
        LABEL_MANAGED: "orlop",
        LABEL_NAMESPACE: cinder_testbed.namespace,
        LABEL_VOLUME: "src",
        LABEL_SNAPSHOT: "Nightly.1",
    }
    snapshot = provider.create_snapshot(disk, "Nightly.1", labels)
    assert provider.is_snapshot_id(snapshot.id) and not provider.is_snapshot_id("Nightly.1")
    snapshot = eventually(
        lambda: (s := provider.get_snapshot(snapshot.id)) and s.state == "available" and s
    )
    assert (snapshot.name, snapshot.volume, snapshot.size) == ("Nightly.1", "src", GIB)
    [found] = provider.find_snapshots(cinder_testbed.namespace, name="Nightly.1")
    assert found.id == snapshot.id
    assert provider.find_snapshots(cinder_testbed.namespace, volume="other") == []
    restored_spec = dataclasses.replace(spec(cinder_testbed, "restored"), snapshot=snapshot)
    restored = ready(provider, provider.create_disk(restored_spec, identity).id)
    assert provider.conn.block_storage.get_volume(restored.id).snapshot_id == snapshot.id
    with pytest.raises(CloudError) as refused:  # Cinder keeps snapshots with their volume
        provider.delete_disk(disk)
    assert "snapshots" in str(refused.value)
    clone = provider.create_disk(spec(cinder_testbed, "clone", from_volume="src"), identity)
    clone = ready(provider, clone.id)
    assert provider.conn.block_storage.get_volume(clone.id).source_volume_id == disk.id
    with pytest.raises(InvalidOption, match="smaller than volume src"):
        provider.create_disk(
            spec(cinder_testbed, "small", from_volume="src", size=str(GIB // 2)), identity
        )
    with pytest.raises(NotFound, match="no Cinder volume or Orlop volume 'nope'"):
        provider.create_disk(spec(cinder_testbed, "x", from_volume="nope"), identity)
    provider.delete_snapshot(snapshot)
    eventually(lambda: provider.get_snapshot(snapshot.id) is None, what="snapshot delete")
    provider.delete_snapshot(snapshot)  # already gone


def test_unknown_type_and_zone_create_nothing(
    cinder_testbed: CinderTestbed, provider: CinderProvider
) -> None:
    identity = provider.identity()
    with pytest.raises(InvalidOption, match=r"unknown Cinder volume type 'gold'.*__DEFAULT__"):
        provider.create_disk(spec(cinder_testbed, "t", type="gold"), identity)
    with pytest.raises(InvalidOption, match=r"unknown Cinder availability zone 'mars'.*nova"):
        provider.create_disk(spec(cinder_testbed, "t", availability_zone="mars"), identity)
    assert cinder_testbed.cloud_disks(cinder_testbed.namespace) == []
    disk = provider.create_disk(spec(cinder_testbed, "t", type="__DEFAULT__"), identity)
    assert ready(provider, disk.id).facts["type"] == "__DEFAULT__"


def test_missing_volume_and_instance(
    cinder_testbed: CinderTestbed, provider: CinderProvider
) -> None:
    identity = provider.identity()
    ghost = Disk(id="00000000-0000-4000-8000-000000000000", name="", size=GIB, state="ready")
    assert provider.get_disk(ghost.id) is None
    with pytest.raises(CloudError) as missing:
        provider.attach_disk(ghost, identity, None)
    assert missing.value.kind is ErrorKind.NOT_FOUND
    nowhere = cinder_testbed.provider(
        cinder_testbed.host(instance_id="11111111-2222-4333-8444-555555555555")
    )
    started = time.monotonic()
    with pytest.raises(
        CloudError, match="instance 11111111-2222-4333-8444-555555555555 does not exist"
    ) as error:
        nowhere.identity()
    assert error.value.kind is ErrorKind.NOT_FOUND and time.monotonic() - started < 30


def test_wrong_token_is_a_credentials_error(cinder_testbed: CinderTestbed, tmp_path: Path) -> None:
    bad = tmp_path / "bad-token"
    bad.write_text("admin:" + "f" * 32)
    provider = cinder_testbed.provider(cinder_testbed.host(token_file=str(bad)))
    with pytest.raises(CloudError) as refused:
        provider.identity()
    assert refused.value.kind is ErrorKind.CREDENTIALS
    assert "f" * 32 not in str(refused.value)  # the token is never in a message


def test_password_login_through_keystone(cinder_testbed: CinderTestbed, tmp_path: Path) -> None:
    nova = cinder_testbed.nova
    nova.users["demo"] = "s3cret-pass"
    password = tmp_path / "password"
    password.write_text("s3cret-pass\n")
    host = cinder_testbed.host()
    login = {
        "auth_url": nova.identity_url,
        "username": "demo",
        "password_file": str(password),
        "project_id": nova.project,
    }
    # the catalog gives Cinder's and Nova's endpoints: no endpoint settings
    settings = {k: v for k, v in host.settings.items() if k not in _TOKEN_SETTINGS}
    provider = CinderProvider(CinderSettings.parse("cinder", settings | login), str(host.state_dir))
    identity = provider.identity()
    disk = provider.create_disk(spec(cinder_testbed, "pw"), identity)
    assert ready(provider, disk.id).volume == "pw"
    password.write_text("wrong")
    wrong = CinderProvider(CinderSettings.parse("cinder", settings | login), str(host.state_dir))
    with pytest.raises(CloudError) as refused:
        wrong.find_disks(cinder_testbed.namespace)
    assert refused.value.kind is ErrorKind.CREDENTIALS and "wrong" not in str(refused.value)


def test_clouds_yaml_entry(
    cinder_testbed: CinderTestbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nova = cinder_testbed.nova
    nova.users["yaml-user"] = "yaml-pass"
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  testcloud:\n    auth:\n"
        f"      auth_url: {nova.identity_url}\n      username: yaml-user\n"
        f"      password: yaml-pass\n      project_id: {nova.project}\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n"
        "    region_name: RegionOne\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    host = cinder_testbed.host()
    settings = {k: v for k, v in host.settings.items() if k not in _TOKEN_SETTINGS}
    provider = CinderProvider(
        CinderSettings.parse("cinder", settings | {"cloud": "testcloud"}), str(host.state_dir)
    )
    assert provider.identity().instance == host.instance
    assert provider.find_disks(cinder_testbed.namespace) == []


def test_unreachable_api_and_metadata(cinder_testbed: CinderTestbed) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    provider = cinder_testbed.provider(
        cinder_testbed.host(
            block_storage_endpoint=f"{dead}/v3/{cinder_testbed.cinder.project}",
            compute_endpoint=f"{dead}/v2.1",
            api_timeout=5,
        )
    )
    started = time.monotonic()
    with pytest.raises(CloudError) as unreachable:
        provider.identity()
    assert unreachable.value.kind is ErrorKind.UNREACHABLE and "no answer" in str(unreachable.value)
    with pytest.raises(CloudError) as unreachable:
        provider.find_disks(cinder_testbed.namespace)
    assert unreachable.value.kind is ErrorKind.UNREACHABLE
    assert time.monotonic() - started < 30
    lost = cinder_testbed.provider(cinder_testbed.host(metadata_url=dead, metadata_timeout=2))
    with pytest.raises(CloudError, match="set instance_id") as no_metadata:
        lost.identity()
    assert no_metadata.value.kind is ErrorKind.UNREACHABLE


_TOKEN_SETTINGS = {"token_file", "block_storage_endpoint", "compute_endpoint"}


def _device_size(path: str) -> int:
    with open(path, "rb") as device:
        return device.seek(0, os.SEEK_END)


class TestCinderConformance(CloudDiskConformance):
    create_options = {"size": "1G"}
    other_options = {"size": "2G"}
    size_limit = GIB

    @pytest.fixture
    def testbed(self, cinder_testbed: CinderTestbed) -> CinderTestbed:
        return cinder_testbed


def test_snapshot_restore_and_clone_through_the_backend(cinder_testbed: CinderTestbed) -> None:
    backend = backend_for(cinder_testbed.host())
    source = VolumeRef("Src.Db", backend.options.validate({"size": "1G"}))
    source.record = backend.create(source)
    target = backend.attach(source)  # mounted: the snapshot is taken frozen (fsfreeze)
    Path(target, "f").write_text("kept")
    made = backend.create_snapshot(source, "nightly")
    assert made["name"] == "nightly" and made["volume"] == "Src.Db"
    with pytest.raises(Conflict, match="a snapshot named nightly already exists"):
        backend.create_snapshot(source, "nightly")
    backend.detach(source)
    [listed] = backend.list_snapshots("Src.Db")
    assert listed["id"] == made["id"]
    eventually(lambda: backend.provider.cloud.get_snapshot(made["id"]).state == "available")  # type: ignore[attr-defined]
    for name, options in (
        ("restored", {"from_snapshot": "nightly"}),  # by Orlop name
        ("by-id", {"from_snapshot": made["id"]}),
        ("clone", {"from_volume": "Src.Db"}),
    ):
        ref = VolumeRef(name, backend.options.validate(options))
        ref.record = backend.create(ref)
        volume = cinder_testbed.cinder.request("GET", f"/volumes/{ref.record['disk_id']}")
        source_of = volume["volume"]["snapshot_id"] or volume["volume"]["source_volid"]
        assert source_of in (made["id"], source.record["disk_id"]) and ref.record["size"] == GIB
        backend.remove(ref)
    with pytest.raises(NotFound, match="nope"):
        backend.create(VolumeRef("x", backend.options.validate({"from_snapshot": "nope"})))
    assert backend.delete_snapshot("nightly")["id"] == made["id"]
    eventually(lambda: backend.list_snapshots("Src.Db") == [], what="the snapshot to go")
    backend.remove(source)
