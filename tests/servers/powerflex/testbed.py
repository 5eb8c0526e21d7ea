"""PowerFlex test hosts: SDCs on the fake gateway, each with its by-id directory."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from orlop.backends.cloud.powerflex import labels as names
from orlop.backends.cloud.powerflex.client import PowerFlexSettings
from orlop.backends.cloud.powerflex.provider import PowerFlexProvider
from tests.servers.powerflex.server import PowerFlexGateway, Tls
from tests.support.cloud.presenter import DevicePresenter
from tests.support.cloud.testbed import CloudHost
from tests.support.names import unique

# Generous for a loaded machine; production defaults stay as they are.
TEST_SETTINGS: dict[str, Any] = {
    "attach_timeout": 20,
    "detach_timeout": 20,
    "create_timeout": 20,
    "api_retry_base": 0.01,
    "api_retry_cap": 0.05,
    "api_max_attempts": 3,
    "poll_max": 0.1,
    "api_timeout": 10,
}


@dataclass
class PfHost:
    sdc_id: str
    guid: str
    settings: dict[str, Any]
    by_id: Path
    state_dir: Path

    def provider(self, **overrides: Any) -> PowerFlexProvider:
        settings = PowerFlexSettings.parse("powerflex", {**self.settings, **overrides})
        return PowerFlexProvider(settings, str(self.state_dir))


def pf_host_factory(
    gateway: PowerFlexGateway,
    tls: Tls,
    password: Path,
    root: Path,
    extra: dict[str, Any] | None = None,
) -> Callable[..., PfHost]:
    namespace = unique("ns")

    def make(**settings: Any) -> PfHost:
        by_id = root / f"pf-by-id-{len(gateway.sdcs)}"
        by_id.mkdir()
        sdc_id, guid = gateway.add_sdc(by_id)
        state = root / f"pf-state-{sdc_id}"
        state.mkdir()
        values = {
            "gateway": gateway.url,
            "username": gateway.username,
            "password_file": str(password),
            "ca_file": str(tls.ca_file),
            "system_id": gateway.system_id,
            "protection_domain": "pd1",
            "storage_pool": "sp-ssd",
            "sdc_guid": guid,
            "namespace": namespace,
            "by_id_dir": str(by_id),
            **(TEST_SETTINGS if extra is None else extra),
            **settings,
        }
        return PfHost(sdc_id, guid, values, by_id, state)

    return make


class PowerFlexTestbed:
    """`CloudTestbed` over the fake PowerFlex gateway: each host an SDC of its own."""

    kind = "powerflex"
    create_options: ClassVar[dict[str, str]] = {"size": "8G"}
    grow_to = 16 * 1024**3

    def __init__(
        self,
        gateway: PowerFlexGateway,
        tls: Tls,
        password: Path,
        root: Path,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.gateway = gateway
        self.make = pf_host_factory(gateway, tls, password, root, extra)

    def host(self) -> CloudHost:
        made = self.make()
        return CloudHost(made.sdc_id, self.kind, made.settings, made.state_dir)

    def cloud_disks(self, namespace: str) -> list[dict[str, Any]]:
        with self.gateway.lock:
            volumes = [dict(v) for v in self.gateway.volumes.values()]
        found = []
        for volume in volumes:
            ours, name = names.decode("o", namespace, volume["name"])
            if ours:
                mapped = volume["mappedSdcInfo"] or []
                found.append(
                    {
                        "id": volume["id"],
                        "volume": name,
                        "attached_to": [m["sdcId"] for m in mapped],
                    }
                )
        return found

    def delete_behind_orlop(self, disk_id: str) -> None:
        self.gateway.delete_volume(disk_id)


def open_powerflex_testbed(stack: contextlib.ExitStack, work: Path) -> PowerFlexTestbed:
    """A PowerFlexTestbed (API 4.x) outside pytest (for bench/bench_cloud.py), with the
    driver's production timeouts; `stack` stops it all."""
    presenter = DevicePresenter()
    stack.callback(presenter.destroy)
    work.mkdir(parents=True, exist_ok=True)
    tls = Tls.make(work / "tls")
    password = work / "powerflex-password"
    password.write_text(secrets.token_urlsafe(12))
    gateway = PowerFlexGateway(tls, password.read_text(), "4.5", presenter=presenter).start()
    stack.callback(gateway.stop)
    return PowerFlexTestbed(gateway, tls, password, work, extra={})
