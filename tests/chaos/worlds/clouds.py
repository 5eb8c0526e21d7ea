"""The testbed-backed worlds: GCE, Cinder, PowerFlex, vSphere (see `testbed.py`).

Each opens its provider's testbed the way `bench/bench_cloud.py` does (one server per run;
vcsim built once from Go source and cached, Cinder's real server started once), and names the
settings whose endpoint the fault proxy fronts.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ClassVar

from orlop.backends.cloud import naming
from tests.chaos.worlds.base import Disk
from tests.chaos.worlds.testbed import TestbedWorld


class GceWorld(TestbedWorld):
    """The GCE fake (operations, the discovery document's rules); its API behind the proxy."""

    kind = "gce"
    proxied = ("endpoint_url",)

    def __init__(self, stack: contextlib.ExitStack, root: Path) -> None:
        from tests.servers.gce.testbed import open_gce_testbed

        testbed = open_gce_testbed(stack, root / "gce")
        assert testbed.session.presenter is not None
        self.server = testbed.server
        self.server.set_delay(0.02)
        super().__init__(stack, testbed, testbed.session.presenter)
        self.create_options = {"size": "10G"}

    def _disks(self, volume: str | None) -> list[Disk]:
        # The server itself, keyed as its presenter is (the disk's numeric id); an attach in
        # flight (an operation not yet done) holds the disk as well.
        encoded = naming.encode_value(self.namespace)
        found = []
        with self.server.lock:
            for (zone, name), disk in self.server.disks.items():
                labels = disk.get("labels", {})
                if labels.get("orlop-namespace") != encoded:
                    continue
                named = naming.decode_value(naming.join_values(labels, "orlop-volume") or "")
                if volume is not None and named != volume:
                    continue
                users = list(disk.get("users", [])) + sorted(
                    self.server.pending.get((zone, name), ())
                )
                holders = list(dict.fromkeys(str(u).rsplit("/", 1)[-1] for u in users))
                found.append(Disk(str(disk["id"]), holders))
        return found


class CinderWorld(TestbedWorld):
    """The real Cinder and our Nova; both endpoints behind a proxy (attachments go through
    Nova, volumes through Cinder)."""

    kind = "cinder"
    proxied = ("block_storage_endpoint", "compute_endpoint")
    settings: ClassVar[dict[str, Any]] = {
        "attach_timeout": 60,
        "detach_timeout": 60,
        "create_timeout": 60,
        "api_timeout": 30,
    }

    def __init__(self, stack: contextlib.ExitStack, root: Path) -> None:
        from tests.servers.cinder.testbed import open_cinder_testbed

        testbed = open_cinder_testbed(stack, root / "cinder")
        super().__init__(stack, testbed, testbed.nova.presenter)


class PowerFlexWorld(TestbedWorld):
    """The PowerFlex gateway fake (API 4.x, HTTPS): the proxy serves TLS with the gateway's
    own certificate, so the driver's CA file still applies."""

    kind = "powerflex"
    proxied = ("gateway",)

    def __init__(self, stack: contextlib.ExitStack, root: Path) -> None:
        from tests.servers.powerflex.testbed import open_powerflex_testbed

        testbed = open_powerflex_testbed(stack, root / "powerflex")
        gateway = testbed.gateway
        assert gateway.presenter is not None
        tls = (gateway.tls.cert_file, gateway.tls.key_file)
        super().__init__(stack, testbed, gateway.presenter, tls=tls)


class VsphereWorld(TestbedWorld):
    """vcsim (built from Go source once, cached); its SOAP endpoint behind the proxy."""

    kind = "vsphere"
    proxied = ("url",)
    settings: ClassVar[dict[str, Any]] = {"claim_settle": 0.3}

    def __init__(self, stack: contextlib.ExitStack, root: Path) -> None:
        from tests.servers.vsphere.vcsim import open_vsphere_testbed

        testbed = open_vsphere_testbed(stack, root / "vsphere")
        super().__init__(stack, testbed, testbed.presenter)
