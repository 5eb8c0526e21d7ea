"""The Cinder provider without a cloud: settings, options, error kinds, device names."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends.cloud.api import CloudError, Disk, ErrorKind
from orlop.backends.cloud.cinder.client import raise_cloud_error
from orlop.backends.cloud.cinder.provider import CinderProvider
from orlop.backends.cloud.cinder.settings import CinderSettings
from orlop.core.model import ConfigError, InvalidOption

# openstacksdk warns of its own future changes (PendingDeprecationWarning) on every call
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

GIB = 1024**3
TOKEN = {
    "token_file": "/etc/orlop/token",
    "block_storage_endpoint": "https://cinder.example:8776/v3/abc/",
    "compute_endpoint": "https://nova.example:8774/v2.1",
}
PASSWORD = {
    "auth_url": "https://keystone.example:5000/v3",
    "username": "orlop",
    "password_file": "/etc/orlop/password",
    "project_id": "abc",
}


def provider(**settings: object) -> CinderProvider:
    return CinderProvider(CinderSettings.parse("cinder", {**TOKEN, **settings}), "/nonexistent")


def test_settings_one_way_to_authenticate() -> None:
    assert CinderSettings.parse("cinder", {"cloud": "mycloud"}).cloud == "mycloud"
    parsed = CinderSettings.parse("cinder", TOKEN)
    assert parsed.block_storage_endpoint == "https://cinder.example:8776/v3/abc"  # no slash
    assert parsed.metadata_url == "http://169.254.169.254" and parsed.by_id_dir == "/dev/disk/by-id"
    assert CinderSettings.parse("cinder", PASSWORD).user_domain == "Default"
    with pytest.raises(ConfigError, match="set exactly one way to authenticate"):
        CinderSettings.parse("cinder", {})
    with pytest.raises(ConfigError, match="set exactly one way to authenticate"):
        CinderSettings.parse("cinder", {"cloud": "x", **PASSWORD})
    with pytest.raises(ConfigError, match="password authentication also needs password_file"):
        CinderSettings.parse("cinder", {k: v for k, v in PASSWORD.items() if k != "password_file"})
    with pytest.raises(ConfigError, match="token_file needs block_storage_endpoint"):
        CinderSettings.parse("cinder", {"token_file": "/t"})
    with pytest.raises(ConfigError, match="not an http:// or https:// URL"):
        CinderSettings.parse("cinder", {**TOKEN, "compute_endpoint": "nova:8774"})


def test_unknown_setting_names_the_allowed_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown cinder setting pasword_file: allowed .*password_file"
    ):
        CinderSettings.parse("cinder", {**PASSWORD, "pasword_file": "/x"})


def test_options_canonical_and_checked() -> None:
    options = CinderProvider.options
    assert options.validate({"size": "1500M"}) == {"size": str(2 * GIB)}  # whole GiB, up
    assert options.validate({"size": "1G", "type": " ssd "})["type"] == "ssd"
    with pytest.raises(InvalidOption, match="unknown option iops: allowed options are"):
        options.validate({"iops": "3000"})
    with pytest.raises(InvalidOption, match="invalid value for option size"):
        options.validate({"size": "big"})
    with pytest.raises(InvalidOption, match="invalid value for option type"):
        options.validate({"type": "x" * 256})
    with pytest.raises(InvalidOption, match="from_snapshot and from_volume exclude each other"):
        provider().validate({"from_snapshot": "s", "from_volume": "v"})
    provider().validate({"from_volume": "v", "size": str(GIB)})


def test_device_paths_use_the_virtio_serial() -> None:
    disk = Disk(id="6d8ec3ae-552d-4055-a148-4ce0ac2b3971", name="n", size=GIB, state="ready")
    paths = provider(by_id_dir="/tmp/by-id").device_paths(disk, attachment=None)  # type: ignore[arg-type]
    assert paths[0] == "/tmp/by-id/virtio-6d8ec3ae-552d-4055-a"
    assert paths[1] == "/tmp/by-id/scsi-0QEMU_QEMU_HARDDISK_6d8ec3ae-552d-4055-a"


def test_snapshot_ids_are_uuids() -> None:
    assert provider().is_snapshot_id("511b2d90-68c1-4513-83e1-440251f5e59b")
    assert not provider().is_snapshot_id("nightly")


def _http(status: int, details: str) -> Exception:
    from openstack import exceptions

    return exceptions.HttpException(message=f"{status}", details=details, http_status=status)


@pytest.mark.parametrize(
    ("status", "details", "kind"),
    [
        (404, "Volume x could not be found.", ErrorKind.NOT_FOUND),
        (401, "The request you have made requires authentication.", ErrorKind.CREDENTIALS),
        (403, "Policy doesn't allow volume:create", ErrorKind.CREDENTIALS),
        (429, "rate limited", ErrorKind.THROTTLED),
        (503, "unavailable", ErrorKind.RETRYABLE),
        (409, "Cannot 'attach_volume' instance while it is in task_state", ErrorKind.RETRYABLE),
        (400, "Invalid volume: status must be available to reserve", ErrorKind.IN_USE),
        (400, "Invalid input received: size must be an integer", ErrorKind.INVALID),
        (413, "VolumeSizeExceedsAvailableQuota", ErrorKind.INVALID),
        (418, "teapot", ErrorKind.FAILED),
    ],
)
def test_http_errors_map_to_kinds(status: int, details: str, kind: ErrorKind) -> None:
    with pytest.raises(CloudError) as raised:
        raise_cloud_error("doing it", _http(status, details))
    assert raised.value.kind is kind and raised.value.code == str(status)
    assert str(raised.value) == f"doing it: {details}"


def test_transport_errors_map_to_kinds() -> None:
    from keystoneauth1 import exceptions as ks

    with pytest.raises(CloudError) as raised:
        raise_cloud_error("listing", ks.ConnectFailure("refused"))
    assert raised.value.kind is ErrorKind.UNREACHABLE and "no answer" in str(raised.value)
    with pytest.raises(CloudError) as raised:
        raise_cloud_error("login", ks.http.Unauthorized(message="bad", http_status=401))
    assert raised.value.kind is ErrorKind.CREDENTIALS
    with pytest.raises(CloudError) as raised:
        raise_cloud_error("odd", RuntimeError("boom"))
    assert raised.value.kind is ErrorKind.FAILED and "boom" in str(raised.value)


def test_unreadable_token_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read the token file /nonexistent/token"):
        _ = provider(token_file="/nonexistent/token").conn


def test_unknown_clouds_yaml_entry_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  other:\n    auth: {auth_url: http://127.0.0.1:1/v3}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    settings = CinderSettings.parse("cinder", {"cloud": "mycloud"})
    with pytest.raises(ConfigError, match="cloud 'mycloud': Cloud mycloud was not found"):
        _ = CinderProvider(settings, "/nonexistent").conn
