"""pytest fixtures for share volumes: one samba on 127.0.0.1:445 and one fake Azure Files
service per session (import them into a test module as with network_fixtures)."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.azurefile.server import AzureFilesServer
from tests.servers.powerscale.server import PowerScaleServer
from tests.servers.samba.server import Samba


class AzureAccount:
    """The session's fake storage account: its server, name, key and driver settings."""

    def __init__(self, server: AzureFilesServer, key_file: Path) -> None:
        self.server = server
        self.name = server.account
        self.key = server.key
        self.key_file = key_file

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "account": self.name,
            "account_key_file": str(self.key_file),
            "endpoint": self.server.url,
            "smb_host": "127.0.0.1",
            "client": "fuse",
            **extra,
        }


# smbnetfs finds SMB servers on port 445 only, so the whole session shares one samba, even
# when several test modules import this fixture (each import is its own fixture to pytest).
_samba: list[Samba] = []


@pytest.fixture(scope="session")
def samba() -> Iterator[Samba]:
    if not _samba:
        _samba.append(Samba().start())
    _samba.append(_samba[0])
    try:
        yield _samba[0]
    finally:
        _samba.pop()
        if len(_samba) == 1:
            _samba.pop().destroy()


@pytest.fixture(scope="session")
def azure(samba: Samba, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureAccount]:
    root = tmp_path_factory.mktemp("azure")
    name = f"orlopaz{secrets.token_hex(4)}"
    key = base64.b64encode(os.urandom(64)).decode()
    samba.add_user(name, key)
    key_file = root / "account-key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    server = AzureFilesServer(
        root / "service",
        name,
        key,
        on_share_created=samba.add_share,
        on_share_deleted=samba.remove_share,
    )
    try:
        yield AzureAccount(server.start(), key_file)
    finally:
        server.stop()


class PowerScaleCluster:
    """The session's fake OneFS cluster: its server, user, password file and settings."""

    def __init__(self, server: PowerScaleServer, password_file: Path) -> None:
        self.server = server
        self.username = server.username
        self.password = server.password
        self.password_file = password_file

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "url": self.server.url,
            "username": self.username,
            "password_file": str(self.password_file),
            "ca_file": str(self.server.ca_file),
            "smb_host": "127.0.0.1",
            "client": "fuse",
            **extra,
        }


@pytest.fixture(scope="session")
def powerscale(
    samba: Samba, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PowerScaleCluster]:
    root = tmp_path_factory.mktemp("powerscale")
    user = f"orlopisi{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(18)
    samba.add_user(user, password)
    password_file = root / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    server = PowerScaleServer(
        root / "cluster",
        user,
        password,
        on_smb_share=samba.add_share,
        on_smb_share_deleted=samba.remove_share,
    )
    (root / "cluster").mkdir()
    try:
        yield PowerScaleCluster(server.start(), password_file)
    finally:
        server.stop()
