"""The vsphere provider against vcsim: disks, attachments with real devices, bad input."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from orlop.backends.cloud.api import CloudError, Disk, DiskSpec, ErrorKind
from orlop.backends.cloud.vsphere.files import DiskPath
from orlop.backends.cloud.vsphere.provider import VsphereProvider
from orlop.backends.cloud.vsphere.settings import VsphereSettings
from orlop.core.model import Conflict, InvalidOption, NotFound
from tests.servers.vsphere.vcsim import MIB, Vcsim, VsphereTestbed
from tests.support.cloud.testbed import CloudHost

pytest_plugins = ["tests.servers.vsphere.fixtures"]


def provider_of(host: CloudHost, **changes: Any) -> VsphereProvider:
    settings = VsphereSettings.parse("vsphere", {**host.settings, **changes})
    return VsphereProvider(settings, str(host.state_dir))


def spec(testbed: VsphereTestbed, volume: str, **options: str) -> DiskSpec:
    token = uuid.uuid4().hex
    labels = {
        "managed-by": "orlop",
        "namespace": testbed.namespace,
        "volume": volume,
        "create-token": token,
    }
    canonical = VsphereProvider.options.validate({"size": "64M", **options})
    return DiskSpec(volume, testbed.namespace, labels, token, canonical)


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def vmdks(vcsim: Vcsim, testbed: VsphereTestbed) -> list[str]:
    return [p.id for p in vcsim.files(testbed.namespace)]


@pytest.fixture
def host(vsphere_testbed: VsphereTestbed) -> CloudHost:
    return vsphere_testbed.host()


@pytest.fixture
def provider(host: CloudHost) -> VsphereProvider:
    return provider_of(host)


def test_create_find_and_names(
    vcsim: Vcsim, vsphere_testbed: VsphereTestbed, provider: VsphereProvider, host: CloudHost
) -> None:
    me = provider.identity()
    assert me.instance == host.instance
    disk = provider.create_disk(spec(vsphere_testbed, "Db.Main_1", size="100M"), me)
    assert disk.size == 100 * MIB and disk.state == "ready"
    assert disk.id == f"[LocalDS_0] orlop-volumes/_db_-_main__1.{disk.name.split('.')[-1]}.vmdk"
    # The server's own storage holds the VMDK (its flat file as large as the disk) and labels.
    path = DiskPath.parse(disk.id)
    assert path is not None and path.volume() == "Db.Main_1"
    flat = vcsim.local(path.datastore, f"{path.folder}/{path.base}-flat.vmdk")
    assert flat.stat().st_size == 100 * MIB
    [seen] = vsphere_testbed.cloud_disks(vsphere_testbed.namespace)
    assert seen["volume"] == "Db.Main_1" and seen["attached_to"] == []
    # Another VM lists the same volume from the datastore folder.
    other = provider_of(vsphere_testbed.host(present=False))
    found = other.find_disks(vsphere_testbed.namespace)
    assert [(d.id, d.volume, d.size) for d in found] == [(disk.id, "Db.Main_1", 100 * MIB)]
    assert other.find_disks(vsphere_testbed.namespace, "db.main_1") == []
    assert other.find_disks("another-namespace") == []
    assert provider.options_of(found[0]) == {
        "size": str(100 * MIB),
        "datastore": "LocalDS_0",
        "diskformat": "thin",
        "attach_as": "persistent",
        "access": "read-write",
    }


def test_a_disk_without_metadata_is_named_by_its_file(
    vcsim: Vcsim, vsphere_testbed: VsphereTestbed, provider: VsphereProvider
) -> None:
    disk = provider.create_disk(spec(vsphere_testbed, "orphan"), provider.identity())
    path = DiskPath.parse(disk.id)
    assert path is not None
    vcsim.local(path.datastore, path.metadata).unlink()  # a create cut short after the VMDK
    [found] = provider.find_disks(vsphere_testbed.namespace, "orphan")
    assert found.id == disk.id and found.volume == "orphan"
    # Its size is unknown here (vcsim reports no capacities): adopting it compares none.
    assert provider.options_of(found) == {"datastore": "LocalDS_0"}


def test_attach_shows_the_device_detach_keeps_the_file(
    vcsim: Vcsim, vsphere_testbed: VsphereTestbed, provider: VsphereProvider, host: CloudHost
) -> None:
    me = provider.identity()
    disk = provider.create_disk(spec(vsphere_testbed, "data"), me)
    provider.attach_disk(disk, me, provider.device_name(disk, me))
    disk = provider.get_disk(disk.id) or pytest.fail("disk vanished")
    mine = disk.attached_to(me.instance)
    assert mine is not None and mine.state == "attached"
    paths = provider.device_paths(disk, mine)
    assert Path(paths[0]).name.startswith("wwn-0x") and Path(paths[1]).name.startswith("scsi-3")
    device = wait_for(lambda: os.path.realpath(paths[0]) if os.path.exists(paths[0]) else None)
    assert device.startswith("/dev/loop")
    assert os.path.realpath(paths[1]) == device
    provider.detach_disk(disk, me.instance)
    wait_for(lambda: not os.path.exists(paths[0]))
    after = provider.get_disk(disk.id)
    assert after is not None and after.attachments == []
    assert disk.id in vmdks(vcsim, vsphere_testbed)  # detached, not destroyed


def test_vcsim_accepts_a_second_attachment_so_the_layer_guards(
    vsphere_testbed: VsphereTestbed, provider: VsphereProvider
) -> None:
    """vSphere refuses a second writer only through the VMFS lock of a running VM; vcsim does
    not: the provider says so (`refuses_second_attach`), and the layer's claim guard works."""
    me = provider.identity()
    other_host = vsphere_testbed.host(present=False)
    other = provider_of(other_host)
    disk = provider.create_disk(spec(vsphere_testbed, "shared"), me)
    provider.attach_disk(disk, me, None)
    other.attach_disk(disk, other.identity(), None)
    now = provider.get_disk(disk.id)
    assert now is not None
    assert sorted(a.instance for a in now.attachments) == sorted([me.instance, other_host.instance])
    assert VsphereProvider.refuses_second_attach is False
    # The claim the layer's guard writes is there for every host to read.
    provider.set_labels(now, {"claim": f"{me.instance} abc"})
    assert (other.get_disk(disk.id) or now).labels["claim"] == f"{me.instance} abc"
    other.detach_disk(now, other_host.instance, force=True)
    provider.detach_disk(now, me.instance)
    provider.set_labels(now, {"claim": None})
    assert "claim" not in (provider.get_disk(disk.id) or now).labels


def test_a_full_controller_gets_a_new_one(
    vsphere_testbed: VsphereTestbed,
) -> None:
    host = vsphere_testbed.host(present=False)
    provider = provider_of(host)
    me = provider.identity()
    disks = [provider.create_disk(spec(vsphere_testbed, f"d{i}", size="1M"), me) for i in range(16)]
    for disk in disks:
        provider.attach_disk(disk, me, None)
    vm = host.extra["vm"]
    controllers = {
        d.key: d.busNumber
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.ParaVirtualSCSIController)
    }
    placed = {
        d.backing.fileName: (controllers.get(d.controllerKey), d.unitNumber)
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.VirtualDisk)
    }
    slots = [placed[d.id] for d in disks]
    assert slots[:15] == [(0, unit) for unit in range(16) if unit != 7]
    assert slots[15] == (1, 0)  # the first controller was full: a second one came
    for disk in disks:
        provider.detach_disk(disk, me.instance)


def test_resize_detached_and_attached(
    vcsim: Vcsim, vsphere_testbed: VsphereTestbed, provider: VsphereProvider
) -> None:
    me = provider.identity()
    disk = provider.create_disk(spec(vsphere_testbed, "grow"), me)
    provider.resize_disk(disk, 100 * MIB)  # detached: ExtendVirtualDisk
    path = DiskPath.parse(disk.id)
    assert path is not None
    flat = vcsim.local(path.datastore, f"{path.folder}/{path.base}-flat.vmdk")
    assert flat.stat().st_size == 100 * MIB
    grown = provider.get_disk(disk.id)
    assert grown is not None and grown.size == 100 * MIB
    provider.attach_disk(grown, me, None)
    attached = provider.get_disk(disk.id) or grown
    paths = provider.device_paths(attached, attached.attachments[0])
    device = wait_for(lambda: os.path.realpath(paths[0]) if os.path.exists(paths[0]) else None)
    provider.resize_disk(attached, 129 * MIB - 5)  # attached: through the VM, MiB-rounded
    after = provider.get_disk(disk.id)
    assert after is not None and after.size == 129 * MIB
    # The guest's device grows with it (the presenter follows the VM's device capacity).
    wait_for(lambda: Path(f"/sys/class/block/{Path(device).name}/size").read_text().strip()
             in ("264192",), timeout=30)  # fmt: skip
    provider.resize_disk(after, 64 * MIB)  # not smaller: nothing happens
    assert (provider.get_disk(disk.id) or after).size == 129 * MIB
    provider.detach_disk(after, me.instance)


def test_clone_from(
    vcsim: Vcsim, vsphere_testbed: VsphereTestbed, provider: VsphereProvider
) -> None:
    me = provider.identity()
    source = provider.create_disk(spec(vsphere_testbed, "source", size="32M"), me)
    clone = provider.create_disk(spec(vsphere_testbed, "copy", clone_from="source", size="48M"), me)
    assert clone.size == 48 * MIB and clone.facts["cloned_from"] == "source"
    bigger = provider.options.validate({"clone_from": "source"})
    same = provider.create_disk(
        DiskSpec("copy2", vsphere_testbed.namespace, spec(vsphere_testbed, "copy2").labels,
                 "t", bigger), me,
    )  # fmt: skip
    assert same.size == source.size
    with pytest.raises(InvalidOption, match="smaller than volume source"):
        provider.create_disk(spec(vsphere_testbed, "tiny", clone_from="source", size="1M"), me)
    with pytest.raises(NotFound, match="volume nosuch does not exist"):
        provider.create_disk(spec(vsphere_testbed, "x", clone_from="nosuch"), me)
    provider.attach_disk(source, me, None)
    with pytest.raises(Conflict, match=f"attached to VM {me.instance}"):
        provider.create_disk(spec(vsphere_testbed, "y", clone_from="source"), me)
    provider.detach_disk(source, me.instance)
    names = sorted(d.volume or "" for d in provider.find_disks(vsphere_testbed.namespace))
    assert names == ["copy", "copy2", "source"]  # nothing left of the refused ones


def test_delete_and_keep(
    vcsim: Vcsim, vsphere_testbed: VsphereTestbed, provider: VsphereProvider
) -> None:
    me = provider.identity()
    gone = provider.create_disk(spec(vsphere_testbed, "gone"), me)
    kept = provider.create_disk(spec(vsphere_testbed, "kept"), me)
    provider.delete_disk(gone)
    provider.delete_disk(gone)  # already gone: fine
    assert provider.get_disk(gone.id) is None
    labels: dict[str, str | None] = dict.fromkeys(
        ["managed-by", "namespace", "volume", "create-token", "claim"]
    )
    provider.set_labels(kept, labels)  # keep_on_remove: the file stays, no longer Orlop's
    assert provider.find_disks(vsphere_testbed.namespace) == []
    assert vmdks(vcsim, vsphere_testbed) == [kept.id]
    with pytest.raises(Conflict, match="exists already but is not volume kept"):
        provider.create_disk(spec(vsphere_testbed, "kept"), me)


# bad input: a clear error, nothing left on the datastore ------------------------------------


def test_bad_options_are_refused_before_any_call() -> None:
    with pytest.raises(InvalidOption, match="diskformat: 'thick' is not allowed: use one of thin"):
        VsphereProvider.options.validate({"diskformat": "thick"})
    with pytest.raises(InvalidOption, match="outside the sizes a virtual disk can have"):
        VsphereProvider.options.validate({"size": "100T"})
    with pytest.raises(InvalidOption, match="attach_as"):
        VsphereProvider.options.validate({"attach_as": "independent_nonpersistent"})


def test_unknown_datastore_and_no_room(
    vcsim: Vcsim, vsphere_testbed: VsphereTestbed, provider: VsphereProvider
) -> None:
    me = provider.identity()
    with pytest.raises(
        CloudError, match=r"datastore nosuch does not exist .* LocalDS_0, LocalDS_1"
    ) as e:
        provider.create_disk(spec(vsphere_testbed, "a", datastore="nosuch"), me)
    assert e.value.kind is ErrorKind.INVALID
    with pytest.raises(InvalidOption, match=r"does not fit datastore LocalDS_0 \(capacity"):
        provider.create_disk(spec(vsphere_testbed, "b", size="60T"), me)
    free = vcsim.datacenter.datastore[0].summary.freeSpace
    with pytest.raises(InvalidOption, match=r"zeroedthick disk .* \(free space"):
        provider.create_disk(
            spec(vsphere_testbed, "c", size=str(free + 64 * MIB), diskformat="zeroedthick"), me
        )
    assert vmdks(vcsim, vsphere_testbed) == []
    made = provider.create_disk(spec(vsphere_testbed, "d", datastore="LocalDS_1"), me)
    assert made.id.startswith("[LocalDS_1] orlop-volumes/d.")


def test_wrong_password(vsphere_testbed: VsphereTestbed, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    provider = provider_of(vsphere_testbed.host(present=False), password_file=str(wrong))
    started = time.monotonic()
    with pytest.raises(CloudError, match=r"logging in to .*InvalidLogin") as e:
        provider.identity()
    assert e.value.kind is ErrorKind.CREDENTIALS and time.monotonic() - started < 10
    missing = provider_of(vsphere_testbed.host(present=False), password_file=str(tmp_path / "no"))
    with pytest.raises(CloudError, match="cannot read the vSphere password_file"):
        missing.find_disks("x")


def test_unreachable_vcenter(vsphere_testbed: VsphereTestbed) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and nobody listens once closed
    provider = provider_of(
        vsphere_testbed.host(present=False), url=f"http://127.0.0.1:{port}/sdk", api_timeout=5
    )
    started = time.monotonic()
    with pytest.raises(CloudError, match="no answer from vSphere") as e:
        provider.find_disks("x")
    assert e.value.kind is ErrorKind.UNREACHABLE and time.monotonic() - started < 10


def test_this_vm_not_found(vsphere_testbed: VsphereTestbed, tmp_path: Path) -> None:
    host = vsphere_testbed.host(present=False)
    nosuch = provider_of(host, vm_uuid="00000000-1111-2222-3333-444444444444")
    with pytest.raises(CloudError, match="no VM with UUID 00000000-1111") as e:
        nosuch.identity()
    assert e.value.kind is ErrorKind.NOT_FOUND
    dmi = tmp_path / "product_uuid"
    vm = host.extra["vm"]
    swapped = vm.config.uuid  # some guests read it byte-swapped: found either way
    parts = swapped.split("-")
    parts[:3] = ["".join(reversed([p[i : i + 2] for i in range(0, len(p), 2)])) for p in parts[:3]]
    dmi.write_text("-".join(parts).upper() + "\n")
    settings = {k: v for k, v in host.settings.items() if k != "vm_uuid"}
    found = VsphereProvider(
        VsphereSettings.parse("vsphere", {**settings, "dmi_uuid_file": str(dmi)}), "/tmp"
    )
    assert found.identity().instance == host.instance
    plain = vsphere_testbed.server.create_vm(f"{host.extra['name']}-plain", enable_uuid=False)
    vsphere_testbed.vms.append(plain)
    no_uuid = provider_of(host, vm_uuid=plain.config.uuid)
    with pytest.raises(CloudError, match=r"lacks disk\.EnableUUID=TRUE"):
        no_uuid.identity()


def test_disk_ids_that_are_not_ours(provider: VsphereProvider) -> None:
    assert provider.get_disk("vol-123") is None
    assert provider.get_disk("[LocalDS_0] orlop-volumes/none.12345678.vmdk") is None
    ghost = Disk("[LocalDS_0] orlop-volumes/none.12345678.vmdk", "none", 1, "ready")
    provider.delete_disk(ghost)  # already gone
    provider.detach_disk(ghost, provider.identity().instance)  # not attached: nothing to do


def test_snapshots_are_first_class_disk_snapshots(
    vcsim: Vcsim, vsphere_testbed: VsphereTestbed, provider: VsphereProvider
) -> None:
    me = provider.identity()
    disk = provider.create_disk(spec(vsphere_testbed, "Snapped.1"), me)
    other = provider.create_disk(spec(vsphere_testbed, "other"), me)
    ns = vsphere_testbed.namespace
    labels = {"managed-by": "orlop", "namespace": ns, "volume": "Snapped.1", "snapshot": "s1"}
    first = provider.create_snapshot(disk, "s1", labels)
    assert first.name == "s1" and first.volume == "Snapped.1" and first.size == disk.size
    assert provider.is_snapshot_id(first.id) and not provider.is_snapshot_id("s1")
    provider.attach_disk(disk, me, None)  # a snapshot of an attached disk, too
    second = provider.create_snapshot(
        provider.get_disk(disk.id) or disk, "s2", {**labels, "snapshot": "s2"}
    )
    provider.create_snapshot(other, "o1", {**labels, "volume": "other", "snapshot": "o1"})
    assert sorted(s.name for s in provider.find_snapshots(ns)) == ["o1", "s1", "s2"]
    assert sorted(s.name for s in provider.find_snapshots(ns, "Snapped.1")) == ["s1", "s2"]
    assert [s.id for s in provider.find_snapshots(ns, None, "s2")] == [second.id]
    assert provider.find_snapshots("another-namespace") == []
    got = provider.get_snapshot(first.id)
    assert got is not None and got.name == "s1"
    # Another VM sees them (the FCD ID is in the volume's metadata on the datastore).
    elsewhere = provider_of(vsphere_testbed.host(present=False))
    assert sorted(s.name for s in elsewhere.find_snapshots(ns, "Snapped.1")) == ["s1", "s2"]
    provider.delete_snapshot(first)
    provider.delete_snapshot(first)  # already gone: fine
    assert provider.get_snapshot(first.id) is None
    assert [s.name for s in provider.find_snapshots(ns, "Snapped.1")] == ["s2"]
    provider.detach_disk(disk, me.instance)
    provider.delete_disk(provider.get_disk(disk.id) or disk)  # goes with its snapshots
    assert provider.get_snapshot(second.id) is None
    assert [p.id for p in vcsim.files(ns)] == [other.id]


def test_an_ended_session_is_logged_in_again(
    vsphere_testbed: VsphereTestbed, provider: VsphereProvider
) -> None:
    me = provider.identity()
    disk = provider.create_disk(spec(vsphere_testbed, "session"), me)
    si = provider.api._connect()
    si.content.sessionManager.Logout()  # as vCenter does with an idle session
    provider.attach_disk(disk, me, None)  # objects fetched before still work
    assert [d.volume for d in provider.find_disks(vsphere_testbed.namespace)] == ["session"]
    provider.detach_disk(disk, me.instance)
