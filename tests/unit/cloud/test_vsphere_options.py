"""vsphere: options, settings, file names and error kinds (no server)."""

from __future__ import annotations

import pytest

from orlop.backends.cloud.api import ErrorKind
from orlop.backends.cloud.vsphere.client import swapped_uuid, to_cloud_error, vim, vmodl
from orlop.backends.cloud.vsphere.files import (
    DiskPath,
    base_name,
    dump_metadata,
    load_metadata,
    namespace_tag,
)
from orlop.backends.cloud.vsphere.provider import VsphereProvider
from orlop.backends.cloud.vsphere.settings import VsphereSettings
from orlop.backends.cloud.vsphere.vmdisks import free_slot
from orlop.core.model import ConfigError, InvalidOption

MIB = 1024**2
SETTINGS = {
    "url": "https://vcenter.example.com/sdk",
    "username": "orlop@vsphere.local",
    "password_file": "/etc/orlop/vsphere-password",
    "datastore": "ds1",
}


def test_options_are_canonical() -> None:
    options = VsphereProvider.options.validate(
        {"size": "1.5G", "diskformat": "eagerzeroedthick", "attach_as": "independent_persistent"}
    )
    assert options == {
        "size": str(1536 * MIB),
        "diskformat": "eagerzeroedthick",
        "attach_as": "independent_persistent",
    }
    assert VsphereProvider.options.validate({"size": "1.5M"})["size"] == str(2 * MIB)  # up to MiB
    assert VsphereProvider.options.validate({"clone_from": "Db.1"}) == {"clone_from": "Db.1"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"diskformat": "thick"}, "use one of thin, zeroedthick, eagerzeroedthick"),
        ({"size": "63T"}, "outside the sizes a virtual disk can have: 1M to 62T"),
        ({"size": "-1G"}, "is not a size"),
        ({"attach_as": "nonpersistent"}, "use one of persistent, independent_persistent"),
        ({"datastore": "[ds1] x"}, "is not a datastore name"),
        ({"clone_from": "../etc"}, "invalid volume name"),
        ({"iops": "100"}, "unknown option iops: allowed options are"),
    ],
)
def test_bad_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidOption, match=message):
        VsphereProvider.options.validate(options)


def test_settings() -> None:
    settings = VsphereSettings.parse("vsphere", SETTINGS)
    assert settings.folder == "orlop-volumes" and settings.verify is True
    assert settings.by_id_dir == "/dev/disk/by-id" and settings.vm_uuid is None
    assert "password" not in VsphereSettings.model_fields  # only a file names it
    with pytest.raises(ConfigError, match="unknown vsphere setting pasword_file: allowed"):
        VsphereSettings.parse("vsphere", {**SETTINGS, "pasword_file": "x"})
    with pytest.raises(ConfigError, match="folder must be a relative path"):
        VsphereSettings.parse("vsphere", {**SETTINGS, "folder": "a/../b"})
    with pytest.raises(ConfigError, match=r"url must be http\(s\)"):
        VsphereSettings.parse("vsphere", {**SETTINGS, "url": "vcenter.example.com"})
    with pytest.raises(ConfigError, match="datastore: Field required"):
        VsphereSettings.parse("vsphere", {k: v for k, v in SETTINGS.items() if k != "datastore"})


def test_file_names_keep_the_name_and_the_namespace() -> None:
    path = DiskPath.of("ds1", "orlop-volumes", "default", "Db.Main_1")
    assert path.id == f"[ds1] orlop-volumes/_db_-_main__1.{namespace_tag('default')}.vmdk"
    assert DiskPath.parse(path.id) == path and path.volume() == "Db.Main_1"
    assert path.in_namespace("default") and not path.in_namespace("other")
    assert path.metadata == f"orlop-volumes/_db_-_main__1.{namespace_tag('default')}.json"
    assert base_name("a", "x") != base_name("b", "x")
    assert DiskPath.parse("vol-123") is None and DiskPath.parse("[ds] x.vmdk") is None


def test_no_volume_file_is_a_file_vsphere_adds_beside_another() -> None:
    # vSphere puts x-flat.vmdk, x-000001.vmdk, x-ctk.vmdk beside x.vmdk: none may be a volume.
    for name in ("data-flat", "data", "data-000001", "data-ctk"):
        base = base_name("default", name)
        for suffix in ("-flat", "-000001", "-ctk", "-delta", "-sesparse"):
            assert base_name("default", "data") + suffix != base


def test_long_names_are_cut_and_named_by_metadata() -> None:
    name = "A" * 255  # 510 characters encoded
    path = DiskPath.of("ds1", "orlop-volumes", "default", name)
    assert len(path.base + "-sesparse.vmdk") <= 255
    assert path.volume() is None  # the metadata file carries the name
    assert base_name("default", name) != base_name("default", "A" * 254 + "B")


def test_metadata_round_trip() -> None:
    raw = dump_metadata({"volume": "Db.1", "claim": "vm-1 ab"}, {"size": 5})
    assert load_metadata(raw) == ({"volume": "Db.1", "claim": "vm-1 ab"}, {"size": 5})
    assert load_metadata(b"not json") is None and load_metadata(b"[1]") is None


def test_bios_uuid_in_either_byte_order() -> None:
    uuid = "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"
    assert swapped_uuid(uuid) == "3c2b1a42-5e4d-706f-8192-a3b4c5d6e7f8"
    assert swapped_uuid(swapped_uuid(uuid)) == uuid
    assert swapped_uuid("nonsense") == "nonsense"


def test_faults_map_to_error_kinds() -> None:
    cases = [
        (vim.fault.InvalidLogin(), ErrorKind.CREDENTIALS),
        (vim.fault.FileNotFound(file="x"), ErrorKind.NOT_FOUND),
        (vim.fault.FileLocked(), ErrorKind.IN_USE),
        (vim.fault.TaskInProgress(), ErrorKind.RETRYABLE),
        (vmodl.fault.InvalidArgument(invalidProperty="newCapacityKb"), ErrorKind.INVALID),
        (vim.fault.FileAlreadyExists(file="y"), ErrorKind.FAILED),
        (vim.fault.GenericVmConfigFault(msg="Failed to lock the file"), ErrorKind.IN_USE),
        (vim.fault.GenericVmConfigFault(msg="Invalid configuration"), ErrorKind.FAILED),
        (ConnectionRefusedError(111, "Connection refused"), ErrorKind.UNREACHABLE),
    ]
    for fault, kind in cases:
        error = to_cloud_error("doing it", fault)
        assert error.kind is kind, fault
        assert str(error).startswith("doing it: ")
    assert "invalidProperty=newCapacityKb" in str(
        to_cloud_error("x", vmodl.fault.InvalidArgument(invalidProperty="newCapacityKb"))
    )


def scsi(key: int, bus: int, paravirtual: bool = True) -> object:
    kind = (
        vim.vm.device.ParaVirtualSCSIController
        if paravirtual
        else vim.vm.device.VirtualLsiLogicController
    )
    return kind(key=key, busNumber=bus)


def disk(controller: int, unit: int) -> object:
    return vim.vm.device.VirtualDisk(key=2000 + unit, controllerKey=controller, unitNumber=unit)


def test_free_slot() -> None:
    assert free_slot([scsi(1000, 0), disk(1000, 0)])[1:] == (1000, 1)
    full = [scsi(1000, 0), *(disk(1000, u) for u in range(16) if u != 7)]
    changes, key, unit = free_slot(full)
    assert (key, unit) == (-100, 0) and changes[0].device.busNumber == 1
    # An LSI controller on bus 0 is left alone: a paravirtual one comes on bus 1.
    changes, key, unit = free_slot([scsi(1000, 0, paravirtual=False)])
    assert key == -100 and changes[0].device.busNumber == 1
    four = [scsi(1000 + b, b, paravirtual=False) for b in range(4)]
    with pytest.raises(Exception, match="four SCSI controllers"):
        free_slot(four)
