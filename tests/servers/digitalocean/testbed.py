"""DigitalOcean test hosts: droplets on the fake API, each with its by-id directory."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from orlop.backends.cloud.digitalocean import labels as tags
from orlop.backends.cloud.digitalocean.client import DigitalOceanSettings
from orlop.backends.cloud.digitalocean.provider import DigitalOceanProvider
from tests.servers.digitalocean.server import DoServer
from tests.support.cloud.presenter import DevicePresenter
from tests.support.cloud.testbed import CloudHost
from tests.support.names import unique

REGION = "nyc1"

# Generous for a loaded machine; production defaults stay as they are.
TEST_SETTINGS: dict[str, Any] = {
    "attach_timeout": 20,
    "detach_timeout": 20,
    "create_timeout": 20,
    "api_retry_base": 0.01,
    "api_retry_cap": 0.05,
    "api_max_attempts": 4,
    "poll_max": 0.1,
    "api_timeout": 10,
    "metadata_timeout": 2,
}


@dataclass
class DoHost:
    droplet_id: int
    settings: dict[str, Any]
    by_id: Path
    state_dir: Path

    def provider(self, **overrides: Any) -> DigitalOceanProvider:
        settings = DigitalOceanSettings.parse("digitalocean", {**self.settings, **overrides})
        return DigitalOceanProvider(settings, str(self.state_dir))


class DoTestbed:
    """`CloudTestbed` over the fake DigitalOcean API: each host a droplet of its own."""

    kind = "digitalocean"
    create_options: ClassVar[dict[str, str]] = {"size": "1G"}
    grow_to = 2 * 1024**3

    def __init__(
        self,
        server: DoServer,
        token_file: Path,
        root: Path,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.server, self.token_file, self.root = server, token_file, root
        self.namespace = unique("ns")
        self.extra = TEST_SETTINGS if extra is None else extra

    def host(self) -> CloudHost:
        index = len(self.server.droplets)
        by_id = self.root / f"do-by-id-{index}"
        by_id.mkdir(parents=True)
        droplet = self.server.add_droplet(REGION, by_id)
        settings = {
            "token_file": str(self.token_file),
            "api_url": self.server.url,
            "metadata_url": self.server.metadata_url(droplet),
            "droplet_id": droplet,
            "region": REGION,
            "namespace": self.namespace,
            "by_id_dir": str(by_id),
            **self.extra,
        }
        state = self.root / f"do-state-{index}"
        state.mkdir(parents=True, exist_ok=True)
        return CloudHost(str(droplet), self.kind, settings, state)

    def cloud_disks(self, namespace: str) -> list[dict[str, Any]]:
        with self.server.lock:
            volumes = list(self.server.volumes.values())
        found = []
        for volume in volumes:
            labels = tags.labels_of(volume.tags)
            if labels.get("namespace") == namespace:
                found.append(
                    {
                        "id": volume.id,
                        "volume": labels.get("volume"),
                        "attached_to": [str(d) for d in volume.droplet_ids],
                    }
                )
        return found

    def delete_behind_orlop(self, disk_id: str) -> None:
        self.server.delete_volume(disk_id)


def open_do_testbed(stack: contextlib.ExitStack, work: Path) -> DoTestbed:
    """A DoTestbed outside pytest (for bench/bench_cloud.py), with the driver's production
    timeouts; `stack` stops it all."""
    presenter = DevicePresenter()
    stack.callback(presenter.destroy)
    work.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    token_file = work / "do-token"
    token_file.write_text(token)
    server = DoServer(token, presenter).start()
    stack.callback(server.stop)
    return DoTestbed(server, token_file, work, extra={})
