"""The `azurefile` driver's settings: the storage account, its key, its endpoints.

    settings: {account: mystorage, account_key_file: /etc/orlop/azure-key}

or `connection_string_file` (as Azure's portal gives it: AccountName=…;AccountKey=…;
EndpointSuffix=…), or `endpoint` for another cloud or a test server. The SMB login is the
account name with the account key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import SecretStr

from orlop.backends.fuse.secret_files import read_secret
from orlop.backends.settings import secret_value
from orlop.backends.share.provider import ShareSettings
from orlop.core.model import ConfigError, InvalidOption


class AzureFileSettings(ShareSettings):
    account: str | None = None
    account_key: SecretStr | None = None
    account_key_file: str | None = None
    connection_string_file: str | None = None
    endpoint_suffix: str = "core.windows.net"
    endpoint: str | None = None  # a full Files endpoint URL (another cloud, a test server)
    discover_interval: float = 30.0  # seconds between listings of shares other hosts made


@dataclass(frozen=True, slots=True)
class Account:
    """The storage account as the settings give it: who, with which key, where."""

    name: str
    key: str = field(repr=False)
    endpoint: str  # the Files REST endpoint, e.g. https://acct.file.core.windows.net
    smb_host: str  # the SMB server to mount


def account_of(settings: AzureFileSettings) -> Account:
    """The account from the settings; ConfigError saying what is missing or unreadable."""
    values = _connection_string(settings.connection_string_file)
    account = settings.account or values.get("AccountName")
    key = secret_value(settings.account_key) or values.get("AccountKey")
    if settings.account_key_file:
        key = _read_setting_file(settings.account_key_file, "account_key_file")
    if not account or not key:
        raise ConfigError(
            "azurefile needs settings account and account_key_file (or account_key, or "
            "connection_string_file)"
        )
    suffix = values.get("EndpointSuffix", settings.endpoint_suffix)
    endpoint = (
        settings.endpoint or values.get("FileEndpoint") or f"https://{account}.file.{suffix}"
    ).rstrip("/")
    smb_host = settings.smb_host or (
        urlsplit(endpoint).hostname
        if settings.endpoint or values.get("FileEndpoint")
        else f"{account}.file.{suffix}"
    )
    return Account(account, key, endpoint, smb_host or "")


def _connection_string(path: str | None) -> dict[str, str]:
    """`AccountName=…;AccountKey=…;EndpointSuffix=…` from a file, as Azure's portal gives it."""
    if not path:
        return {}
    if not os.path.isabs(path):
        raise ConfigError(f"connection_string_file {path!r} must be an absolute path")
    text = _read_setting_file(path, "connection_string_file")
    values = {}
    for part in text.strip().split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _read_setting_file(path: str, setting: str) -> str:
    try:
        return read_secret(path, setting)
    except InvalidOption as error:
        raise ConfigError(f"azurefile setting {setting}: {error}") from None
