"""Driver `settings:` blocks: every backend declares them; unknown keys stop the daemon;
secrets are SecretStr and never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from orlop.backends import BACKENDS, backend_class
from orlop.backends.base import BackendContext
from orlop.backends.fuse.s3 import S3Backend
from orlop.backends.fuse.sshfs import SshfsBackend
from orlop.backends.settings import BackendSettings
from orlop.cli.main import cli
from orlop.core.model import ConfigError
from orlop.daemon import check_settings, redacted_settings

SECRET = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----"

# A valid settings block per kind, and the secrets in it.
GOOD: dict[str, tuple[dict[str, Any], set[str]]] = {
    "directory": ({}, set()),
    "loopfile": ({"allow_suid_dev": True}, set()),
    "sshfs": ({"private_key": SECRET, "password": "pw"}, {"private_key", "password"}),
    "s3": ({"access_key_id": "AKIA1", "secret_access_key": "sk"}, {"secret_access_key"}),
    "azurefile": ({"account": "acct", "account_key": "a2V5", "client": "fuse"}, {"account_key"}),
    "powerscale": ({"url": "https://isi:8080", "username": "u", "password": "pw"}, {"password"}),
}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_every_backend_declares_its_settings(kind: str) -> None:
    model = backend_class(kind).settings_model
    assert issubclass(model, BackendSettings)
    settings, secrets = GOOD[kind]
    check_settings("d", kind, settings)
    assert model.secret_names() == secrets
    shown = redacted_settings(kind, settings)
    assert all(shown[name] == "<redacted>" for name in secrets)
    assert all(str(settings[name]) not in repr(model.parse(kind, settings)) for name in secrets)


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_an_unknown_key_names_the_key_driver_and_allowed_keys(kind: str) -> None:
    allowed = sorted(backend_class(kind).settings_model.model_fields)
    with pytest.raises(ConfigError) as raised:
        check_settings("my-driver", kind, {**GOOD[kind][0], "colour": "blue"})
    message = str(raised.value)
    assert message.startswith(f"driver my-driver: unknown {kind} setting colour: ")
    assert message.endswith(f"allowed settings are {', '.join(allowed) or 'none'}")


@pytest.mark.parametrize("kind", sorted(set(BACKENDS) - {"ebs"}))
def test_every_registered_backend_forbids_unknown_settings(kind: str) -> None:
    # EBS checks its own settings until it moves onto the cloud layer (issue 8).
    model = backend_class(kind).settings_model
    assert issubclass(model, BackendSettings) and model.model_config.get("extra") == "forbid"


def test_misspelt_sshfs_private_key_fails() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown sshfs setting private_kye: allowed settings "
        r"are known_hosts, password, private_key",
    ):
        check_settings("ssh", "sshfs", {"private_kye": SECRET})


def test_bad_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="invalid loopfile settings: allow_suid_dev"):
        check_settings("blk", "loopfile", {"allow_suid_dev": "perhaps"})
    with pytest.raises(ConfigError, match="access_key_id and secret_access_key go together"):
        check_settings("s3", "s3", {"access_key_id": "AKIA1"})


def test_backends_use_their_secret_settings(tmp_path: Path) -> None:
    ssh = SshfsBackend(BackendContext("ssh", str(tmp_path / "ssh"), settings=GOOD["sshfs"][0]))
    assert ssh.client.settings_password == "pw"
    assert ssh.client.settings_identity is not None
    assert Path(ssh.client.settings_identity).read_text() == SECRET + "\n"
    assert Path(ssh.client.settings_identity).stat().st_mode & 0o077 == 0
    s3 = S3Backend(BackendContext("s3", str(tmp_path / "s3"), settings=GOOD["s3"][0]))
    assert s3.remote.credentials({}) == ("AKIA1", "sk")
    with pytest.raises(ConfigError, match="unknown s3 setting"):
        S3Backend(BackendContext("s3", str(tmp_path / "s3"), settings={"secret_key": "x"}))


@pytest.mark.parametrize(
    "before", [True, False], ids=["orlop --config F serve", "serve --config F"]
)
def test_serve_stops_on_a_misspelt_key_before_making_anything(tmp_path: Path, before: bool) -> None:
    state = tmp_path / "state"
    config = tmp_path / "orlop.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(state),
                "plugin_dir": str(tmp_path / "plugins"),
                "admin_socket": str(tmp_path / "admin.sock"),
                "drivers": {"ssh": {"backend": "sshfs", "settings": {"private_kye": SECRET}}},
            }
        )
    )
    where = ["--config", str(config)]
    args = [*where, "serve"] if before else ["serve", *where]
    result = CliRunner().invoke(cli, args, env={"ORLOP_CONFIG": None})
    assert result.exit_code == 1
    assert "driver ssh: unknown sshfs setting private_kye" in result.output
    assert "allowed settings are known_hosts, password, private_key" in result.output
    assert "BEGIN OPENSSH" not in result.output
    assert not state.exists()
