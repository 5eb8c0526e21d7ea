"""The Cinder testbed: the real Cinder, our Nova in front of it, and hosts (Nova servers)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from orlop.backends.cloud.cinder.provider import CinderProvider
from orlop.backends.cloud.cinder.settings import CinderSettings
from tests.servers.cinder.nova import NovaServer
from tests.servers.cinder.venv import CinderServer
from tests.support.cloud.presenter import DevicePresenter
from tests.support.cloud.testbed import CloudHost
from tests.support.names import unique

GIB = 1024**3


def start_cinder_cloud(stack: contextlib.ExitStack) -> tuple[CinderServer, NovaServer]:
    """The real Cinder, and our Nova in front of it (Cinder reports extends to it)."""
    nova = NovaServer(DevicePresenter()).start()
    stack.callback(nova.presenter.destroy)
    stack.callback(nova.stop)
    cinder = CinderServer(nova_url=nova.url, keystone_url=nova.identity_url)
    stack.callback(cinder.stop)
    cinder.start()
    nova.use_cinder(cinder.url, cinder.project, cinder.token)
    return cinder, nova


def open_cinder_testbed(stack: contextlib.ExitStack, work: Path) -> CinderTestbed:
    """A CinderTestbed outside pytest (for bench/bench_cloud.py); `stack` stops it all."""
    cinder, nova = start_cinder_cloud(stack)
    work.mkdir(parents=True, exist_ok=True)
    testbed = CinderTestbed(cinder, nova, work, unique("bench"))
    stack.callback(testbed.cleanup)
    return testbed


class CinderTestbed:
    """`tests/support/cloud/testbed.py:CloudTestbed` over the real Cinder and our Nova."""

    kind = "cinder"
    create_options = {"size": "1G"}
    grow_to = 2 * GIB

    def __init__(self, cinder: CinderServer, nova: NovaServer, root: Path, namespace: str) -> None:
        self.cinder, self.nova, self.root, self.namespace = cinder, nova, root, namespace
        self.hosts: list[CloudHost] = []
        self.token_file = root / "token"
        self.token_file.write_text(cinder.token)
        os.chmod(self.token_file, 0o600)

    def host(self, present: bool = True, **settings: Any) -> CloudHost:
        index = len(self.hosts)
        by_id = self.root / f"host{index}" / "by-id"
        by_id.mkdir(parents=True)
        server = self.nova.add_server(by_id, present=present)
        complete: dict[str, Any] = {
            "token_file": str(self.token_file),
            "block_storage_endpoint": self.cinder.url,
            "compute_endpoint": self.nova.url,
            "metadata_url": self.nova.metadata_url(server),
            "namespace": self.namespace,
            "by_id_dir": str(by_id),
            # generous: eight helpers share a 2-core machine
            "attach_timeout": 60,
            "detach_timeout": 60,
            "create_timeout": 120,
            "api_timeout": 30,
            **settings,
        }
        host = CloudHost(server.id, "cinder", complete, self.root / f"host{index}" / "state")
        host.state_dir.mkdir(parents=True)
        self.hosts.append(host)
        return host

    def provider(self, host: CloudHost) -> CinderProvider:
        settings = CinderSettings.parse("cinder", host.settings)
        return CinderProvider(settings, str(host.state_dir))

    def cloud_disks(self, namespace: str) -> list[dict[str, Any]]:
        volumes = self.cinder.request("GET", "/volumes/detail")["volumes"]
        found = []
        for volume in volumes:
            metadata = volume.get("metadata") or {}
            if metadata.get("orlop-namespace") != namespace or volume["status"] == "deleting":
                continue
            attachments = self.cinder.request("GET", f"/attachments?volume_id={volume['id']}")
            holders = {a["instance"] for a in attachments["attachments"] if a.get("instance")}
            found.append(
                {
                    "id": volume["id"],
                    "volume": metadata.get("orlop-volume"),
                    "attached_to": sorted(holders),
                    "status": volume["status"],
                    "size": volume["size"] * GIB,
                    "metadata": metadata,
                }
            )
        return found

    def delete_behind_orlop(self, disk_id: str) -> None:
        self.cinder.request("DELETE", f"/volumes/{disk_id}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ids = [v["id"] for v in self.cinder.request("GET", "/volumes")["volumes"]]
            if disk_id not in ids:
                return
            time.sleep(0.1)

    def cleanup(self) -> None:
        """Detach and delete what the test left in Cinder (its namespace only)."""
        for disk in self.cloud_disks(self.namespace):
            for attachment in self.cinder.request("GET", f"/attachments?volume_id={disk['id']}")[
                "attachments"
            ]:
                self.cinder.request("DELETE", f"/attachments/{attachment['id']}")
            for snapshot in self.cinder.request("GET", f"/snapshots?volume_id={disk['id']}")[
                "snapshots"
            ]:
                self.cinder.request("DELETE", f"/snapshots/{snapshot['id']}")
            self.cinder.wait_volume(disk["id"], "available", "error", timeout=30)
            self.cinder.request("DELETE", f"/volumes/{disk['id']}")
            self.nova.presenter.forget(disk["id"])
