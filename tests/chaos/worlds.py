"""The clouds a chaos run plays against: one provider's test server, the fault proxy in front
of it, and the device presenter that shows attached disks as real loop devices.

A `World` makes hosts (each an instance on the server with its own by-id directory and the
driver settings an orlop.yaml would hold), answers from the server itself (bypassing Orlop)
which instances hold a volume's disk, and gives the loop device behind a disk (for fsck).
Everything is started into an `ExitStack`, so the same code serves pytest and `scripts/chaos`.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.support.cloud.presenter import DevicePresenter
from tests.support.faults import FaultProxy

# Short timeouts and a fast discovery pass: moves settle in seconds on a loaded machine.
COMMON_SETTINGS: dict[str, Any] = {
    "attach_timeout": 15,
    "detach_timeout": 15,
    "create_timeout": 15,
    "api_retry_base": 0.01,
    "api_retry_cap": 0.1,
    "api_max_attempts": 6,
    "poll_max": 0.2,
    "discover_interval": 0.5,
}


@dataclass
class Host:
    """One machine: the instance the cloud knows, and its driver settings."""

    instance: str
    settings: dict[str, Any]


@dataclass
class Disk:
    id: str
    holders: list[str]  # instances the server shows it attached (or attaching/detaching) to


class World(Protocol):
    kind: str
    namespace: str
    faults: FaultProxy
    presenter: DevicePresenter
    create_options: dict[str, str]

    def host(self, root: Path) -> Host:
        """A new instance on the server, its by-id directory under `root`."""

    def disks(self, volume: str) -> list[Disk]:
        """The server's disks of this namespace named `volume` (for invariants)."""

    def all_disks(self) -> list[Disk]:
        """Every disk of this namespace (for leak checks)."""

    def bare_move(self, first: Host, second: Host) -> float:
        """Seconds the server itself takes to detach a disk from `first` and attach it to
        `second` (no Orlop): the provider's own detach + attach time."""


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


class DigitalOceanWorld:
    """The stateful DigitalOcean fake (attach/detach actions take 0.1 s), the fault proxy in
    front of its API; metadata is asked of the fake directly."""

    kind = "digitalocean"
    create_options = {"size": "1G"}

    def __init__(self, stack: contextlib.ExitStack, root: Path) -> None:
        from tests.servers.digitalocean.server import DoServer

        self.presenter = DevicePresenter()
        stack.callback(self.presenter.destroy)
        token = secrets.token_hex(16)
        self.token_file = root / "do-token"
        self.token_file.write_text(token)
        self.token_file.chmod(0o600)
        self.server = DoServer(token, self.presenter)
        self.server.action_delay = 0.1
        self.server.start()
        stack.callback(self.server.stop)
        self.faults = FaultProxy(self.server.url, "digitalocean")
        stack.callback(self.faults.stop)
        self.namespace = f"chaos-{secrets.token_hex(4)}"

    def host(self, root: Path) -> Host:
        from tests.servers.digitalocean.testbed import REGION

        by_id = root / "by-id"
        by_id.mkdir(parents=True, exist_ok=True)
        droplet = self.server.add_droplet(REGION, by_id)
        settings = {
            "token_file": str(self.token_file),
            "api_url": self.faults.url,
            "metadata_url": self.server.metadata_url(droplet),
            "droplet_id": droplet,
            "region": REGION,
            "namespace": self.namespace,
            "by_id_dir": str(by_id),
            "api_timeout": 10,
            "metadata_timeout": 2,
            **COMMON_SETTINGS,
        }
        return Host(str(droplet), settings)

    def _disks(self, volume: str | None) -> list[Disk]:
        from orlop.backends.cloud.digitalocean import tags

        with self.server.lock:
            volumes = list(self.server.volumes.values())
        found = []
        for v in volumes:
            labels = tags.labels_of(v.tags)
            if labels.get("namespace") != self.namespace:
                continue
            if volume is not None and labels.get("volume") != volume:
                continue
            holders = [str(d) for d in v.droplet_ids]
            if v.reserved_for is not None and str(v.reserved_for) not in holders:
                holders.append(str(v.reserved_for))  # an attach in progress holds it
            found.append(Disk(v.id, holders))
        return found

    def disks(self, volume: str) -> list[Disk]:
        return self._disks(volume)

    def all_disks(self) -> list[Disk]:
        return self._disks(None)

    def bare_move(self, first: Host, second: Host) -> float:
        # DigitalOcean's own time: a detach action, then an attach action, each completing
        # after the fake's action_delay (0.1 s), as its tools wait on them.
        delay = self.server.action_delay
        return 2 * (delay if isinstance(delay, float) else max(delay))


def open_world(kind: str, stack: contextlib.ExitStack, root: Path) -> World:
    if kind == "ebs":
        return EbsWorld(stack)
    if kind == "digitalocean":
        return DigitalOceanWorld(stack, root)
    raise SystemExit(f"chaos: no world for provider {kind!r}; known: {', '.join(PROVIDERS)}")


PROVIDERS = ("ebs", "digitalocean")
