"""A VM's virtual disks: attach an existing VMDK, detach it keeping the file, hot-extend it,
and which VMs hold which disk files.

Attach adds the VMDK on a paravirtual SCSI controller at its first free unit, with a new
controller on a free bus (in the same reconfiguration) when every one is full. Detach
removes the device with no file operation, so the VMDK stays on the datastore.
"""

from __future__ import annotations

from typing import Any

from orlop.backends.cloud.api import Attachment, CloudError, ErrorKind
from orlop.backends.cloud.vsphere.client import Vsphere, vim

SCSI_UNITS = [unit for unit in range(16) if unit != 7]  # unit 7 is the controller's own
SCSI_BUSES = range(4)  # a VM has at most four SCSI controllers


def attachments(api: Vsphere) -> dict[str, list[Attachment]]:
    """disk file → the VMs it is attached to, from every VM's devices (one round trip)."""
    found: dict[str, list[Attachment]] = {}
    vms = api.call("listing VMs", lambda: api.vm_properties(["config.hardware.device"]))
    for vm, props in vms:
        devices = props.get("config.hardware.device") or []
        buses = {
            d.key: d.busNumber
            for d in devices
            if isinstance(d, vim.vm.device.VirtualSCSIController)
        }
        for device in devices:
            file = _file(device)
            if file:
                slot = f"scsi{buses.get(device.controllerKey, '?')}:{device.unitNumber}"
                found.setdefault(file, []).append(Attachment(vm._moId, "attached", slot))
    return found


def attach(api: Vsphere, instance: str, disk_id: str, size: int, mode: str) -> None:
    vm = api.vm_ref(instance)
    devices = api.call(f"reading VM {instance}", lambda: vm.config.hardware.device)
    changes, controller_key, unit = free_slot(devices)
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=disk_id, diskMode=mode)
    device = vim.vm.device.VirtualDisk(
        key=-101,
        controllerKey=controller_key,
        unitNumber=unit,
        capacityInKB=size // 1024,
        backing=backing,
    )
    changes.append(_change("add", device))
    _reconfigure(api, vm, changes, f"attaching {disk_id} to VM {instance}")


def detach(api: Vsphere, instance: str, disk_id: str) -> None:
    vm = api.vm_ref(instance)
    devices = api.call(f"reading VM {instance}", lambda: vm.config.hardware.device)
    mine = [d for d in devices if _file(d) == disk_id]
    if mine:  # no fileOperation: the device goes, the VMDK stays
        changes = [_change("remove", d) for d in mine]
        _reconfigure(api, vm, changes, f"detaching {disk_id} from VM {instance}")


def extend(api: Vsphere, instance: str, disk_id: str, size: int) -> None:
    """Grow a disk through the VM that holds it (vSphere locks an attached disk's file)."""
    vm = api.vm_ref(instance)
    devices = api.call(f"reading VM {instance}", lambda: vm.config.hardware.device)
    for device in devices:
        if _file(device) == disk_id:
            device.capacityInKB = size // 1024
            device.capacityInBytes = size
            _reconfigure(api, vm, [_change("edit", device)], f"extending {disk_id} on {instance}")


def free_slot(devices: list[Any]) -> tuple[list[Any], int, int]:
    """(device changes to make first, controller key, unit) for one more disk: a free unit on
    a paravirtual SCSI controller, or a new controller on a free bus when all are full."""
    used: dict[int, set[int]] = {}
    for device in devices:
        if device.controllerKey is not None and device.unitNumber is not None:
            used.setdefault(device.controllerKey, set()).add(device.unitNumber)
    controllers = sorted(
        (d for d in devices if isinstance(d, vim.vm.device.ParaVirtualSCSIController)),
        key=lambda d: d.busNumber,
    )
    for controller in controllers:
        free = [u for u in SCSI_UNITS if u not in used.get(controller.key, set())]
        if free:
            return [], controller.key, free[0]
    buses = {d.busNumber for d in devices if isinstance(d, vim.vm.device.VirtualSCSIController)}
    bus = next((b for b in SCSI_BUSES if b not in buses), None)
    if bus is None:
        raise CloudError(
            "the VM has four SCSI controllers and no free unit on its paravirtual ones: "
            "detach a disk first",
            ErrorKind.INVALID,
        )
    controller = vim.vm.device.ParaVirtualSCSIController(
        key=-100, busNumber=bus, sharedBus=vim.vm.device.VirtualSCSIController.Sharing.noSharing
    )
    return [_change("add", controller)], -100, 0


def _file(device: Any) -> str | None:
    if not isinstance(device, vim.vm.device.VirtualDisk):
        return None
    return getattr(device.backing, "fileName", None) or None


def _change(operation: str, device: Any) -> Any:
    kind = getattr(vim.vm.device.VirtualDeviceSpec.Operation, operation)
    return vim.vm.device.VirtualDeviceSpec(operation=kind, device=device)


def _reconfigure(api: Vsphere, vm: Any, changes: list[Any], what: str) -> None:
    spec = vim.vm.ConfigSpec(deviceChange=changes)
    api.wait(api.call(what, lambda: vm.ReconfigVM_Task(spec)), what)
