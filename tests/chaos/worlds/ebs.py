"""EBS: moto behind the refusing EC2 proxy."""

from __future__ import annotations

import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

from tests.chaos.worlds.base import COMMON_SETTINGS, Disk, Host
from tests.support.cloud.presenter import DevicePresenter
from tests.support.faults import FaultProxy


class EbsWorld:
    """moto behind the refusing EC2 proxy, the fault proxy in front; nodes poll moto."""

    kind = "ebs"
    create_options = {"size": "1G"}

    def __init__(self, stack: contextlib.ExitStack) -> None:
        from tests.servers.ec2.server import Ec2Proxy, MotoServer, unset_ca_bundles

        unset_ca_bundles()
        self.stack = stack
        self.moto = MotoServer().start()
        stack.callback(self.moto.stop)
        self.ec2 = Ec2Proxy(self.moto.url)
        stack.callback(self.ec2.stop)
        self.faults = FaultProxy(self.ec2.url, "ebs")
        stack.callback(self.faults.stop)
        self.presenter = DevicePresenter()
        stack.callback(self.presenter.destroy)
        self.namespace = f"chaos-{secrets.token_hex(4)}"
        self.client = self.moto.client()

    def host(self, root: Path) -> Host:
        from tests.servers.ec2.server import (
            CREDENTIALS,
            REGION,
            ZONE,
            SimulatedNode,
            run_instance,
        )

        instance = run_instance(self.client)
        node = SimulatedNode(self.moto.client(), instance, self.presenter, root)
        node.start()
        self.stack.callback(node.stop)
        settings = {
            **CREDENTIALS,
            "region": REGION,
            "endpoint_url": self.faults.url,
            "instance_id": instance,
            "availability_zone": ZONE,
            "namespace": self.namespace,
            "claim_settle": 0.3,
            **COMMON_SETTINGS,
            **node.settings(),
        }
        return Host(instance, settings)

    def _disks(self, volume: str | None) -> list[Disk]:
        filters = [{"Name": "tag:orlop:namespace", "Values": [self.namespace]}]
        if volume is not None:
            filters.append({"Name": "tag:orlop:volume", "Values": [volume]})
        found = self.client.describe_volumes(Filters=filters)["Volumes"]
        return [
            Disk(
                v["VolumeId"],
                [a["InstanceId"] for a in v.get("Attachments", []) if a["State"] != "detached"],
            )
            for v in found
        ]

    def disks(self, volume: str) -> list[Disk]:
        return self._disks(volume)

    def all_disks(self) -> list[Disk]:
        return self._disks(None)

    def bare_move(self, first: Host, second: Host) -> float:
        from tests.servers.ec2.server import ZONE

        made = self.client.create_volume(Size=1, AvailabilityZone=ZONE)["VolumeId"]
        try:
            self._attach(made, first.instance)
            started = time.monotonic()
            self.client.detach_volume(VolumeId=made, InstanceId=first.instance)
            self._until(made, lambda a: not a)
            self._attach(made, second.instance)
            took = time.monotonic() - started
            self.client.detach_volume(VolumeId=made, InstanceId=second.instance)
            self._until(made, lambda a: not a)
            return took
        finally:
            self.client.delete_volume(VolumeId=made)

    def _attach(self, volume_id: str, instance: str) -> None:
        self.client.attach_volume(VolumeId=volume_id, InstanceId=instance, Device="/dev/sdz")
        self._until(volume_id, lambda a: [x["State"] for x in a] == ["attached"])

    def _until(self, volume_id: str, done: Any) -> None:
        deadline = time.monotonic() + 30
        while True:
            volume = self.client.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
            attachments = [a for a in volume["Attachments"] if a["State"] != "detached"]
            if done(attachments):
                return
            assert time.monotonic() < deadline, f"{volume_id}: {attachments}"
            time.sleep(0.01)
