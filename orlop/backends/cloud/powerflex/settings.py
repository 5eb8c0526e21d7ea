"""The `powerflex` driver's settings: the gateway, its login, the system, pool and SDC."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import field_validator

from orlop.backends.cloud.api import CloudSettings


class PowerFlexSettings(CloudSettings):
    gateway: str  # https://gateway[:port]
    username: str
    password_file: str
    ca_file: str | None = None  # the CA that signed the gateway's certificate
    verify: bool = True
    system_id: str | None = None  # default: the only system the gateway manages
    protection_domain: str | None = None  # name; default: the only one
    storage_pool: str | None = None  # name; default: the only one in the protection domain
    sdc_guid: str | None = None  # default: `drv_cfg --query_guid`
    drv_cfg: str = "/opt/emc/scaleio/sdc/bin/drv_cfg"
    api_timeout: float = 30.0

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        url = urlsplit(value if "://" in value else f"https://{value}")
        if url.scheme != "https" or not url.hostname:
            raise ValueError(
                f"{value!r}: the PowerFlex gateway is reached over https (https://host[:port])"
            )
        try:
            url.port  # noqa: B018 - a bad port raises here
        except ValueError:
            raise ValueError(f"{value!r} has a bad port") from None
        return value

    def address(self) -> tuple[str, int]:
        url = urlsplit(self.gateway if "://" in self.gateway else f"https://{self.gateway}")
        return str(url.hostname), url.port or 443
