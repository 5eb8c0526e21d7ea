"""DigitalOcean: the stateful fake."""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

from tests.chaos.worlds.base import COMMON_SETTINGS, Disk, Host
from tests.support.cloud.presenter import DevicePresenter
from tests.support.faults import FaultProxy


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
