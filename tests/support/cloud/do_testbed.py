"""DigitalOcean test hosts: droplets on the fake API, each with its by-id directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orlop.backends.block.cloud.digitalocean.client import DigitalOceanSettings
from orlop.backends.block.cloud.digitalocean.provider import DigitalOceanProvider

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
