"""Attaching a persistent disk to an instance and detaching it, each waiting for its zone
operation. Compute Engine refuses a disk held READ_WRITE elsewhere (resourceInUseByAnother-
Resource, naming the holder): that refusal is the race guard, the layer adds none."""

from __future__ import annotations

from orlop.backends.cloud.api import CloudError, ErrorKind
from orlop.backends.cloud.gce.client import Compute
from orlop.backends.cloud.gce.resources import last


def attach(
    compute: Compute, project: str, zone: str, name: str, instance: str, device_name: str
) -> None:
    from google.cloud import compute_v1

    attached = compute_v1.AttachedDisk(
        source=f"projects/{project}/zones/{zone}/disks/{name}",
        device_name=device_name,
        mode="READ_WRITE",
        auto_delete=False,
    )
    what = f"attach disk {name} to instance {instance}"
    instances = compute.client("InstancesClient")
    try:
        operation = compute.call(
            what,
            instances.attach_disk_unary,
            project=project,
            zone=zone,
            instance=instance,
            attached_disk_resource=attached,
        )
    except CloudError as error:
        if error.kind is ErrorKind.IN_USE and error.holder == instance:
            return  # attached here already: what was asked
        raise
    compute.wait(what, operation, project, zone, compute.settings.attach_timeout)


def detach(compute: Compute, project: str, zone: str, name: str, instance: str) -> None:
    """Detach disk `name` from `instance` by the device name it has there (another host may
    have attached it under another name); not attached there is not an error."""
    instances = compute.client("InstancesClient")
    try:
        found = compute.call(
            f"read instance {instance}",
            instances.get,
            project=project,
            zone=zone,
            instance=instance,
        )
    except CloudError as error:
        if error.kind is ErrorKind.NOT_FOUND:
            return  # the instance is gone, and its attachments with it
        raise
    device = next((d.device_name for d in found.disks if last(d.source) == name), None)
    if device is None:
        return
    what = f"detach disk {name} from instance {instance}"
    try:
        operation = compute.call(
            what,
            instances.detach_disk_unary,
            project=project,
            zone=zone,
            instance=instance,
            device_name=device,
        )
    except CloudError as error:
        if error.kind is ErrorKind.NOT_FOUND:
            return
        raise
    compute.wait(what, operation, project, zone, compute.settings.detach_timeout)
