"""The PowerFlex provider against the fake HTTPS gateway (`powerflex_server.py`), API 3.x and
4.x, through the unpatched PyPowerFlex client, with real loop devices where the SDC would
show mapped volumes. Provider level: each call, each error kind, bad input."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orlop.backends.cloud.api import (
    LABEL_CLAIM,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_SNAPSHOT,
    LABEL_TOKEN,
    LABEL_VOLUME,
    CloudError,
    DiskSpec,
    ErrorKind,
    Identity,
)
from orlop.backends.cloud.powerflex.provider import PowerFlexProvider
from orlop.core.model import ConfigError, InvalidOption
from tests.servers.powerflex.server import PowerFlexGateway
from tests.servers.powerflex.testbed import PfHost

pytest_plugins = ["tests.servers.powerflex.fixtures"]

GIB = 1024**3
MakeHost = Callable[..., PfHost]


def spec(provider: PowerFlexProvider, volume: str, namespace: str, **options: str) -> DiskSpec:
    canonical = provider.options.validate(options)
    provider.validate(canonical)
    labels = {
        LABEL_MANAGED: "orlop",
        LABEL_NAMESPACE: namespace,
        LABEL_VOLUME: volume,
        LABEL_TOKEN: f"token-{volume}",
    }
    return DiskSpec(volume, namespace, labels, f"token-{volume}", canonical)


def until(check: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


BOTH_APIS = pytest.mark.parametrize("pf_api_version", ["3.6", "4.5"])


@pytest.mark.parametrize("pf_api_version", ["3.6"])  # 4.x: the conformance suite
def test_create_map_write_move_to_second_sdc_grow_and_delete(
    pf_host: MakeHost, pf_gateway: PowerFlexGateway
) -> None:
    first, second = pf_host(), pf_host()
    a, b = first.provider(), second.provider()
    me, other = a.identity(), b.identity()
    assert me.instance == first.sdc_id and me.what == "SDC"
    namespace = first.settings["namespace"]
    disk = a.create_disk(spec(a, "Db.Main_1", namespace, size="9G", provisioning="thick"), me)
    assert disk.size == 16 * GIB  # 8 GiB steps, rounded up
    assert disk.volume == "Db.Main_1" and disk.labels[LABEL_TOKEN] == "token-Db.Main_1"
    assert a.options_of(disk) == {"size": str(16 * GIB), "provisioning": "thick"}
    assert "8 GiB steps" in a.describe({"disk_id": disk.id, "size": disk.size})["size_note"]
    # The other host finds it by its Docker name (in the volume's name), in its namespace.
    assert [d.id for d in b.find_disks(namespace, "Db.Main_1")] == [disk.id]
    assert [d.volume for d in b.find_disks(namespace)] == ["Db.Main_1"]
    assert b.find_disks("other-namespace") == []

    a.attach_disk(disk, me, a.device_name(disk, me))
    now = a.get_disk(disk.id)
    assert now is not None and now.attached_to(me.instance) is not None
    [path] = a.device_paths(now, now.attachments[0])
    assert path == f"{first.by_id}/emc-vol-{pf_gateway.system_id}-{disk.id}"
    until(lambda: os.path.exists(path))
    payload = os.urandom(4096)
    with open(path, "r+b") as device:
        device.seek(GIB)
        device.write(payload)
    with pytest.raises(CloudError) as refused:
        b.attach_disk(disk, other, None)
    assert refused.value.kind is ErrorKind.IN_USE and refused.value.holder == me.instance
    a.attach_disk(disk, me, None)  # mapped here already: nothing to do

    a.detach_disk(disk, me.instance)
    assert not os.path.exists(path)
    a.detach_disk(disk, me.instance)  # not mapped any more: nothing to do
    b.attach_disk(disk, other, None)
    moved = f"{second.by_id}/emc-vol-{pf_gateway.system_id}-{disk.id}"
    until(lambda: os.path.exists(moved))
    with open(moved, "rb") as device:
        device.seek(GIB)
        assert device.read(4096) == payload
    b.resize_disk(disk, 17 * GIB)
    grown = b.get_disk(disk.id)
    assert grown is not None and grown.size == 24 * GIB
    b.detach_disk(disk, other.instance)
    b.delete_disk(disk)
    assert b.get_disk(disk.id) is None
    b.delete_disk(disk)  # already gone


def test_names_long_and_short_and_local_labels(pf_host: MakeHost) -> None:
    host = pf_host()
    provider = host.provider()
    me = provider.identity()
    namespace = host.settings["namespace"]
    long_name = "Very.Long_volume-name-" * 10
    disk = provider.create_disk(spec(provider, long_name, namespace), me)
    assert len(disk.name) <= 31 and disk.size == 8 * GIB
    # Asked for by name, another host finds it (it computes the same PowerFlex name)...
    other = host.provider()
    [found] = other.find_disks(namespace, long_name)
    assert found.id == disk.id
    # ...but a listing cannot read a hashed name back: it is Orlop's, without a Docker name.
    assert [d.id for d in other.find_disks(namespace)] == [disk.id]
    provider.set_labels(disk, {LABEL_CLAIM: f"{me.instance} abc"})
    again = provider.get_disk(disk.id)
    assert again is not None and again.labels[LABEL_CLAIM] == f"{me.instance} abc"
    provider.set_labels(again, {LABEL_CLAIM: None})
    assert LABEL_CLAIM not in provider.get_disk(disk.id).labels  # type: ignore[union-attr]
    # keep_on_remove: Orlop's labels go, so does the volume's Orlop name.
    provider.set_labels(again, dict.fromkeys((LABEL_VOLUME, LABEL_NAMESPACE, LABEL_TOKEN)))
    kept = provider.get_disk(disk.id)
    assert kept is not None and kept.name == f"kept-{disk.id}" and kept.volume is None
    assert provider.find_disks(namespace) == []
    provider.delete_disk(kept)


def test_snapshots_and_volumes_from_them(pf_host: MakeHost) -> None:
    host = pf_host()
    provider = host.provider()
    me = provider.identity()
    namespace = host.settings["namespace"]
    disk = provider.create_disk(spec(provider, "src", namespace), me)
    provider.attach_disk(disk, me, None)
    path = provider.device_paths(disk, provider.get_disk(disk.id).attachments[0])[0]  # type: ignore[union-attr]
    until(lambda: os.path.exists(path))
    with open(path, "r+b") as device:
        device.write(b"snapshot me")
        os.fsync(device.fileno())
    labels = {
        LABEL_MANAGED: "orlop",
        LABEL_NAMESPACE: namespace,
        LABEL_VOLUME: "src",
        LABEL_SNAPSHOT: "nightly",
    }
    made = provider.create_snapshot(disk, "nightly", labels)
    assert made.name == "nightly" and made.volume == "src" and made.size == 8 * GIB
    assert provider.is_snapshot_id(made.id) and not provider.is_snapshot_id("nightly")
    assert [s.id for s in provider.find_snapshots(namespace, "src")] == [made.id]
    assert [s.id for s in provider.find_snapshots(namespace, name="nightly")] == [made.id]
    assert provider.find_snapshots(namespace, name="other") == []
    assert provider.get_snapshot(made.id) is not None
    assert provider.get_snapshot(disk.id) is None  # a volume, not a snapshot
    assert provider.find_disks(namespace, "src")[0].id == disk.id  # snapshots are not disks

    copy = provider.create_disk(
        dataclasses.replace(spec(provider, "copy", namespace, size="16G"), snapshot=made), me
    )
    assert copy.size == 16 * GIB and copy.volume == "copy"
    provider.attach_disk(copy, me, None)
    copied = provider.device_paths(copy, provider.get_disk(copy.id).attachments[0])[0]  # type: ignore[union-attr]
    until(lambda: os.path.exists(copied))
    with open(copied, "rb") as device:
        assert device.read(11) == b"snapshot me"
    for each in (disk, copy):
        provider.detach_disk(each, me.instance)
        provider.delete_disk(each)
    provider.delete_snapshot(made)
    provider.delete_snapshot(made)  # already gone
    assert provider.find_snapshots(namespace) == []


def test_bad_input_is_refused_before_anything_is_created(
    pf_host: MakeHost, pf_gateway: PowerFlexGateway, tmp_path: Path
) -> None:
    host = pf_host()
    provider = host.provider()
    namespace = host.settings["namespace"]
    with pytest.raises(InvalidOption, match="1G to 1P"):
        spec(provider, "x", namespace, size="2000T")
    with pytest.raises(InvalidOption, match="thin, thick"):
        spec(provider, "x", namespace, provisioning="sparse")

    # An unknown storage pool: named, with the ones there are, nothing made.
    with pytest.raises(InvalidOption, match=r"unknown storage pool sp-nvme.*sp-hdd, sp-ssd"):
        wrong = host.provider(storage_pool="sp-nvme")
        wrong.create_disk(spec(wrong, "x", namespace), wrong.identity())
    with pytest.raises(InvalidOption, match="unknown protection domain pd9"):
        wrong = host.provider(protection_domain="pd9")
        wrong.create_disk(spec(wrong, "x", namespace), wrong.identity())

    # A wrong password, an SDC the system does not know, a system that does not exist.
    bad = tmp_path / "bad-password"
    bad.write_text("wrong")
    with pytest.raises(CloudError) as denied:
        host.provider(password_file=str(bad)).identity()
    assert denied.value.kind is ErrorKind.CREDENTIALS and "wrong" not in str(denied.value)
    with pytest.raises(CloudError, match="no SDC with GUID 01234567") as nowhere:
        host.provider(sdc_guid="01234567-89AB-CDEF-0123-456789ABCDEF").identity()
    assert nowhere.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(CloudError, match="no system 0000000000000000"):
        host.provider(system_id="0000000000000000").identity()
    # No drv_cfg here: the GUID cannot be learnt, and the message says what to do.
    with pytest.raises(CloudError, match="set sdc_guid"):
        host.provider(sdc_guid=None, drv_cfg=str(tmp_path / "no-drv_cfg")).identity()

    # TLS: without the CA the gateway's certificate is refused; an unreachable gateway.
    with pytest.raises(CloudError, match="ca_file") as untrusted:
        host.provider(ca_file=None).identity()
    assert untrusted.value.kind is ErrorKind.CREDENTIALS
    started = time.monotonic()
    with pytest.raises(CloudError) as silent:
        host.provider(gateway="https://127.0.0.1:9").identity()
    assert silent.value.kind is ErrorKind.UNREACHABLE and time.monotonic() - started < 10
    with pytest.raises(ConfigError, match="https"):
        host.provider(gateway="http://127.0.0.1:1")

    # Mapping to an SDC that does not exist.
    disk = provider.create_disk(spec(provider, "x", namespace), provider.identity())
    with pytest.raises(CloudError) as gone:
        provider.attach_disk(disk, Identity("0123456789abcdef", None, None, "SDC"), None)
    assert gone.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(CloudError):  # mapped volumes are not deleted
        provider.attach_disk(disk, provider.identity(), None)
        provider.delete_disk(disk)
    provider.detach_disk(disk, host.sdc_id)
    provider.delete_disk(disk)
    assert pf_gateway.volumes == {}


@BOTH_APIS
def test_both_logins(pf_host: MakeHost, pf_gateway: PowerFlexGateway) -> None:
    provider = pf_host().provider()
    provider.identity()
    if pf_gateway.api_version.startswith("3"):  # GET /api/login, Basic auth with the token
        assert pf_gateway.logins["rest"] == 0 and pf_gateway.logins["api"] > 0
    else:  # POST /rest/auth/login, bearer tokens (the gateway refuses Basic auth there)
        assert pf_gateway.logins["rest"] > 0


def test_repeated_create_returns_the_same_volume(
    pf_host: MakeHost, pf_gateway: PowerFlexGateway
) -> None:
    host = pf_host()
    provider = host.provider()
    asked = spec(provider, "twice", host.settings["namespace"])
    first = provider.create_disk(asked, provider.identity())
    again = provider.create_disk(asked, provider.identity())  # the answer was lost
    assert again.id == first.id and len(pf_gateway.volumes) == 1
    provider.delete_disk(first)


def test_sdc_guid_from_drv_cfg(pf_host: MakeHost, tmp_path: Path) -> None:
    host = pf_host()
    drv_cfg = tmp_path / "drv_cfg"  # what the SDC package installs prints the GUID
    drv_cfg.write_text(f'#!/bin/sh\n[ "$1" = --query_guid ] && echo {host.guid.lower()}\n')
    drv_cfg.chmod(0o755)
    identity = host.provider(sdc_guid=None, drv_cfg=str(drv_cfg)).identity()
    assert identity.instance == host.sdc_id
