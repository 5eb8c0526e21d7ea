"""PowerFlex test hosts: SDCs on the fake gateway, each with its by-id directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orlop.backends.block.cloud.powerflex.client import PowerFlexSettings
from orlop.backends.block.cloud.powerflex.provider import PowerFlexProvider
from tests.support.cloud.powerflex_server import PowerFlexGateway, Tls
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
    gateway: PowerFlexGateway, tls: Tls, password: Path, root: Path
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
            **TEST_SETTINGS,
            **settings,
        }
        return PfHost(sdc_id, guid, values, by_id, state)

    return make
