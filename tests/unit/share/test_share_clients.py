"""Share volumes without a server: names, mount command lines, client choice, signatures."""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
from pathlib import Path
from typing import Any

import pytest

from orlop.backends.share import clients, naming
from orlop.backends.share.azurefile.api import AzureFiles
from orlop.backends.share.clients import NfsTarget, Presentation, SmbTarget
from orlop.backends.share.mounting import nfs_client_check, smb_client_check
from orlop.backends.share.powerscale.backend import PowerScaleBackend
from orlop.core.model import BackendError, InvalidOption
from tests.servers.azurefile.server import AzureFilesServer, sign, string_to_sign
from tests.servers.powerscale.server import PowerScaleServer

TARGET = SmbTarget("acct.file.core.windows.net", "data", "acct", "s3cr3t+/=", path="vol/a")


def test_share_names() -> None:
    assert naming.share_name("data-1") == "data-1"
    for volume in ("Data", "my_vol", "a", "x" * 200, "a--b", "db.main"):
        name = naming.share_name(volume)
        assert naming.is_share_name(name), name
    assert naming.share_name("Data") != naming.share_name("data")
    with pytest.raises(ValueError, match="not a share name"):
        naming.canonical_share("Bad_Name")


def test_cifs_command_line_keeps_the_password_in_a_file() -> None:
    look = Presentation(uid="999", gid="998", file_mode="0640", dir_mode="0750", readonly=True)
    args = clients.cifs_mount_args(TARGET, "/mnt/v", "/run/cred", look)
    assert args[:5] == ["mount", "-t", "cifs", "//acct.file.core.windows.net/data/vol/a", "/mnt/v"]
    options = args[-1].split(",")
    assert "credentials=/run/cred" in options and "vers=3.1.1" in options
    assert {"uid=999", "gid=998", "file_mode=0640", "dir_mode=0750", "ro"} <= set(options)
    assert {"serverino", "mfsymlinks", "cache=strict"} <= set(options)
    assert not any("s3cr3t" in arg for arg in args)
    assert clients.cifs_credentials(TARGET) == "username=acct\npassword=s3cr3t+/=\n"


def test_nfs_command_lines() -> None:
    v4 = clients.nfs_mount_args(NfsTarget("isi", "/ifs/orlop/v", "4.1"), "/mnt/v", Presentation())
    assert v4 == ["mount", "-t", "nfs", "isi:/ifs/orlop/v", "/mnt/v", "-o",
                  "vers=4.1,hard,timeo=600,retrans=2,noresvport"]  # fmt: skip
    v3 = clients.nfs_mount_args(
        NfsTarget("isi", "/ifs/orlop/v", "3"), "/mnt/v", Presentation(readonly=True)
    )
    assert v3[-1] == "vers=3,hard,timeo=600,retrans=2,noresvport,nolock,ro"


def test_smbnetfs_config_and_command() -> None:
    config = clients.smbnetfs_config(TARGET, 20)
    assert 'auth "acct.file.core.windows.net/data" "acct" "s3cr3t+/="' in config
    assert 'smb_query_browsers "false"' in config
    command = clients.smbnetfs_command("/m", "/h", Presentation(uid="1", file_mode="0644",
                                                                dir_mode="0755"))  # fmt: skip
    options = command.args[-1].split(",")
    assert {"big_writes", "max_write=131072", "allow_other", "uid=1", "umask=0022"} <= set(options)
    assert "config=/h/.smb/smbnetfs.conf" in options
    assert command.env is not None and command.env["HOME"] == "/h"
    assert not any("s3cr3t" in arg for arg in command.args)
    with pytest.raises(InvalidOption, match="quote"):
        clients.smbnetfs_config(SmbTarget("h", "s", "u", 'pa"ss'), 20)


def test_client_choice_on_this_host() -> None:
    has_cifs = clients.kernel_has("cifs")[0]
    client, why = clients.choose_client("auto", "smb")
    assert client == ("kernel" if has_cifs and clients.which("mount.cifs") else "fuse")
    assert why
    with pytest.raises(InvalidOption, match="no FUSE NFS client"):
        clients.choose_client("fuse", "nfs")
    with pytest.raises(InvalidOption, match="not allowed"):
        clients.choose_client("both", "smb")
    if not has_cifs:
        with pytest.raises(InvalidOption, match="client kernel"):
            clients.choose_client("kernel", "smb")


def test_signature_matches_azure_documented_example() -> None:
    headers = {"x-ms-version": "2025-11-05", "x-ms-date": "Sun, 29 Nov 2026 10:00:00 GMT",
               "x-ms-share-quota": "5", "content-length": "0"}  # fmt: skip
    text = string_to_sign("PUT", headers, "/data?restype=share", "acct")
    assert text == (
        "PUT\n\n\n\n\n\n\n\n\n\n\n\n"
        "x-ms-date:Sun, 29 Nov 2026 10:00:00 GMT\nx-ms-share-quota:5\nx-ms-version:2025-11-05\n"
        "/acct/data\nrestype:share"
    )
    key = base64.b64encode(b"k" * 64).decode()
    assert sign(key, text) != sign(base64.b64encode(b"j" * 64).decode(), text)


def test_sdk_with_a_wrong_key_gets_403(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(64)).decode()
    server = AzureFilesServer(tmp_path, "acct", key, enforce_quota=False).start()
    try:
        good = AzureFiles("acct", key, server.url, 5)
        assert good.create_share("abc", 1, "Hot", "abc") is True
        assert good.create_share("abc", 1, "Hot", "abc") is False  # ShareAlreadyExists
        assert good.properties("abc")["quota"] == 1
        wrong = AzureFiles("acct", base64.b64encode(os.urandom(64)).decode(), server.url, 5)
        with pytest.raises(BackendError, match=r"AuthenticationFailed \(HTTP 403\)"):
            wrong.properties("abc")
        good.delete_share("abc")
        good.delete_share("abc")  # gone already: not an error
        assert server.shares == {}
    finally:
        server.stop()


def test_doctor_says_which_smb_client_and_why() -> None:
    check = smb_client_check()
    client, why = clients.choose_client("auto", "smb")
    assert check.ok and why in check.detail
    assert ("kernel cifs" if client == "kernel" else "smbnetfs (FUSE)") in check.detail
    nfs = nfs_client_check()
    assert nfs.ok == clients.kernel_has("nfs")[0] or clients.which("mount.nfs") is None
    names = [c.name for c in PowerScaleBackend.host_checks()]
    assert "NFS client (for protocol nfs)" in names and "SMB client (client: auto)" in names


def test_onefs_fake_enforces_session_csrf_and_origin(tmp_path: Path) -> None:
    server = PowerScaleServer(tmp_path, "admin", "pw").start()
    context = ssl.create_default_context(cafile=str(server.ca_file))
    host = server.url.removeprefix("https://")

    def request(method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        connection = http.client.HTTPSConnection(host, context=context, timeout=10)
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        cookies = response.headers.get_all("Set-Cookie") or []
        connection.close()
        return response.status, (json.loads(raw) if raw else None, cookies)

    try:
        status, (_body, _cookies) = request("POST", "/session/1/session",
                                            {"username": "admin", "password": "no"})  # fmt: skip
        assert status == 401
        status, (_body, cookies) = request(
            "POST", "/session/1/session", {"username": "admin", "password": "pw"}
        )
        assert status == 201
        jar = dict(c.split(";")[0].split("=", 1) for c in cookies)
        session, csrf = f"isisessid={jar['isisessid']}", jar["isicsrf"]
        path = "/platform/15/quota/quotas"
        assert request("GET", path)[0] == 401  # no session
        assert request("GET", path, Cookie=session)[0] == 403  # no CSRF token
        assert request("GET", path, Cookie=session, **{"X-CSRF-Token": csrf})[0] == 403  # Origin
        ok = request("GET", path, Cookie=session, Origin=server.url, **{"X-CSRF-Token": csrf})
        assert ok == (200, ({"quotas": [], "resume": None}, []))
    finally:
        server.stop()


def test_azurefile_settings_from_a_connection_string(tmp_path: Path) -> None:
    from orlop.backends.base import BackendContext
    from orlop.backends.share.azurefile.backend import AzureFileBackend
    from orlop.core.model import ConfigError

    text = (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
        "EndpointSuffix=core.chinacloudapi.cn"
    )
    (tmp_path / "conn").write_text(text + "\n")
    backend = AzureFileBackend(
        BackendContext("az", str(tmp_path / "d"),
                       settings={"connection_string_file": str(tmp_path / "conn")})
    )  # fmt: skip
    assert backend.provider.account == "acct"
    assert backend.provider.endpoint == "https://acct.file.core.chinacloudapi.cn"
    assert backend.provider.smb_host == "acct.file.core.chinacloudapi.cn"
    with pytest.raises(ConfigError, match="account_key_file: cannot read"):
        AzureFileBackend(
            BackendContext("az", str(tmp_path / "d"),
                           settings={"account": "a", "account_key_file": str(tmp_path / "no")})
        )  # fmt: skip
