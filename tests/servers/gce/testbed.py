"""The GCE test server as a CloudTestbed (fixtures: `gce_fixtures.py`)."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orlop.backends.cloud import naming
from tests.servers.gce.http import metadata_server, serve
from tests.servers.gce.server import ZONES, GceServer
from tests.support.cloud.presenter import DevicePresenter
from tests.support.cloud.testbed import CloudHost
from tests.support.names import unique

GIB = 1024**3
_hosts = itertools.count(1)


@dataclass
class GceSession:
    server: GceServer
    endpoint: str
    http: ThreadingHTTPServer
    presenter: DevicePresenter | None


@dataclass
class GceTestbed:
    """CloudTestbed over the GCE test server; one namespace, any number of hosts."""

    session: GceSession
    namespace: str = field(default_factory=lambda: unique("ns"))
    kind: str = "gce"
    create_options: dict[str, str] = field(default_factory=lambda: {"size": "10G"})
    grow_to: int = 12 * GIB
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orlop-gce-")))
    metadata: list[ThreadingHTTPServer] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)

    @property
    def server(self) -> GceServer:
        return self.session.server

    def settings(self, instance: str, **extra: Any) -> dict[str, Any]:
        return {
            "project": self.server.project,
            "zone": ZONES[0],
            "instance": instance,
            "endpoint_url": self.session.endpoint,
            "namespace": self.namespace,
            "by_id_dir": str(self.root / instance / "by-id"),
            "attach_timeout": 60.0,
            "detach_timeout": 60.0,
            "create_timeout": 60.0,
            "api_timeout": 30.0,
            **extra,
        }

    def host(self, interface: str = "SCSI") -> CloudHost:
        name = f"host-{next(_hosts)}-{self.namespace[-8:]}"
        by_id = self.root / name / "by-id"
        by_id.mkdir(parents=True)
        instance = self.server.add_instance(name, ZONES[0], by_id, interface)
        self.instances.append(name)
        state = self.root / name / "state"
        state.mkdir()
        return CloudHost(name, "gce", self.settings(name), state, {"instance_id": instance.id})

    def metadata_url(self, instance: str) -> str:
        """A metadata server that says this machine is `instance`."""
        found = self.server.instances[(ZONES[0], instance)]
        http, url = metadata_server(self.server.project, found.zone, instance, found.id)
        self.metadata.append(http)
        return url

    def cloud_disks(self, namespace: str) -> list[dict[str, Any]]:
        encoded = naming.encode_value(namespace)
        found = []
        with self.server.lock:
            for (zone, name), disk in self.server.disks.items():
                labels = disk.get("labels", {})
                if labels.get("orlop-namespace") != encoded:
                    continue
                volume = naming.join_values(labels, "orlop-volume")
                found.append(
                    {
                        "id": f"{zone}/{name}",
                        "volume": naming.decode_value(volume or ""),
                        "attached_to": [u.rsplit("/", 1)[-1] for u in disk.get("users", [])],
                        "status": disk["status"],
                        "labels": dict(labels),
                    }
                )
        return found

    def delete_behind_orlop(self, disk_id: str) -> None:
        """As in the console: detach from every instance, then delete."""
        zone, _, name = disk_id.partition("/")
        with self.server.lock:
            disk = self.server.disks.pop((zone, name), None)
            if disk is None:
                return
            for instance in self.server.instances.values():
                instance.disks = [d for d in instance.disks if d["source"] != disk["selfLink"]]
        if self.session.presenter is not None:
            self.session.presenter.forget(disk["id"])

    def destroy(self) -> None:
        mark = f"(namespace {self.namespace})"  # in the description of every disk Orlop made
        with self.server.lock:
            mine = [
                f"{zone}/{name}"
                for (zone, name), disk in self.server.disks.items()
                if mark in disk.get("description", "")
            ]
        for disk_id in mine:
            self.delete_behind_orlop(disk_id)
        with self.server.lock:
            for key in [k for k in self.server.instances if k[1] in self.instances]:
                del self.server.instances[key]
        for http in self.metadata:
            http.shutdown()
            http.server_close()
        shutil.rmtree(self.root, ignore_errors=True)


def start_session(with_devices: bool) -> GceSession:
    presenter = DevicePresenter() if with_devices else None
    server = GceServer(presenter=presenter)
    http, endpoint = serve(server)
    return GceSession(server, endpoint, http, presenter)


def stop_session(session: GceSession) -> None:
    session.http.shutdown()
    session.http.server_close()
    session.server.clock.stop()
    if session.presenter is not None:
        session.presenter.destroy()


def open_gce_testbed(stack: contextlib.ExitStack, work: Path) -> GceTestbed:
    """A GceTestbed outside pytest (for bench/bench_cloud.py); `stack` stops it all."""
    session = start_session(with_devices=True)
    stack.callback(stop_session, session)
    testbed = GceTestbed(session)
    stack.callback(testbed.destroy)
    return testbed
