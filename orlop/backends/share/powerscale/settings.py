"""The `powerscale` driver's settings: the cluster, the login, where volumes live.

settings: {url: "https://isilon.example.com:8080", username: orlop,
           password_file: /etc/orlop/isilon-password, ca_file: /etc/orlop/isilon-ca.pem}
"""

from __future__ import annotations

import re

from pydantic import SecretStr

from orlop.backends.fuse.secret_files import read_secret
from orlop.backends.settings import secret_value
from orlop.backends.share.provider import ShareSettings
from orlop.core.model import ConfigError


class PowerScaleSettings(ShareSettings):
    url: str  # https://cluster:8080
    username: str
    password: SecretStr | None = None
    password_file: str | None = None
    ca_file: str | None = None
    verify: bool = True
    base_path: str = "/ifs/orlop"
    nfs_host: str | None = None  # default: the host of url (as smb_host)
    discover_interval: float = 30.0  # seconds between listings of volumes other hosts made


def password_of(settings: PowerScaleSettings) -> str:
    """The login password (`password_file` wins); ConfigError if there is none, or the url
    or base_path cannot be right."""
    password = secret_value(settings.password)
    if settings.password_file:
        password = read_secret(settings.password_file, "password file")
    if not password:
        raise ConfigError("powerscale needs setting password_file (or password)")
    if not settings.url.startswith("https://"):
        raise ConfigError(f"powerscale url {settings.url!r} must start with https://")
    if not re.fullmatch(r"/ifs(/[A-Za-z0-9._-]+)+", settings.base_path):
        raise ConfigError(f"base_path {settings.base_path!r} must be a path under /ifs")
    return password
