"""Network backends without a network: option checks, client command lines, secret files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orlop.backends import backend_class
from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.fuse.rclone import reason as _rclone_reason
from orlop.backends.fuse.s3 import S3Backend
from orlop.backends.fuse.secret_files import write_secret
from orlop.backends.fuse.sshfs import SshfsBackend
from orlop.core.model import InvalidOption
from orlop.host.run import CommandError

SECRET = "s3cr3t-Pa55word"


def ssh_backend(tmp_path: Path, **settings: str) -> SshfsBackend:
    return SshfsBackend(BackendContext("ssh", str(tmp_path / "ssh"), settings=settings))


def s3_backend(tmp_path: Path, **settings: str) -> S3Backend:
    return S3Backend(BackendContext("s3", str(tmp_path / "s3"), settings=settings))


def test_kinds_are_registered_with_global_scope() -> None:
    for kind in ("sshfs", "s3"):
        cls = backend_class(kind)
        assert cls.kind == kind
        assert cls.capabilities.scope == "global"
        assert {check.name for check in cls.host_checks()} >= {
            "command fusermount3",
            "device /dev/fuse",
        }


@pytest.mark.parametrize(
    "options, message",
    [
        ({"host": "-oProxyCommand=evil"}, "not a host name"),
        ({"host": "a b"}, "not a host name"),
        ({"host": "h", "user": "root;rm"}, "not a user name"),
        ({"host": "h", "port": "70000"}, "not a port"),
        ({"host": "h", "path": "a/../b"}, "must not contain"),
        ({"host": "h", "identity": "/no/such/key"}, "not a readable file"),
        ({"host": "h", "identity": "relative/key"}, "absolute path"),
        ({"host": "h", "timeout": "0"}, "out of range"),
        ({"host": "h", "colour": "blue"}, "allowed options are"),
    ],
)
def test_sshfs_rejects_bad_options(tmp_path: Path, options: dict[str, str], message: str) -> None:
    backend = ssh_backend(tmp_path)
    with pytest.raises(InvalidOption, match=message):
        backend.validate("v", backend.options.validate(options))


def test_sshfs_needs_a_path_to_share(tmp_path: Path) -> None:
    backend = ssh_backend(tmp_path)
    with pytest.raises(InvalidOption, match="share=true needs option path"):
        backend.validate("v", backend.options.validate({"host": "h", "share": "yes"}))


def test_sshfs_password_goes_to_stdin_never_argv(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(SECRET + "\n")
    backend = ssh_backend(tmp_path)
    options = backend.options.validate(
        {"host": "::1", "port": "2222", "user": "u", "password_file": str(password_file)}
    )
    command = backend.client.command(VolumeRef("v", options), "/mnt/v", {})
    assert not any(SECRET in arg for arg in command.args)
    assert command.stdin == (SECRET + "\n").encode()
    assert command.args[1] == "u@[::1]:v"
    assert "password_stdin" in command.args and "BatchMode=yes" not in command.args
    assert "StrictHostKeyChecking=yes" in command.args


def test_sshfs_key_login_is_batch_mode_and_readonly_is_ro(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("key")
    backend = ssh_backend(tmp_path)
    options = backend.options.validate(
        {"host": "h", "identity": str(key), "path": "/srv", "readonly": "true", "share": "true"}
    )
    command = backend.client.command(VolumeRef("v", options), "/mnt/v", {})
    assert command.args[1] == "root@h:/srv"
    assert command.stdin is None
    for expected in ("BatchMode=yes", f"IdentityFile={key}", "ro", "reconnect"):
        assert expected in command.args


def test_sshfs_key_from_settings_is_a_0600_file(tmp_path: Path) -> None:
    backend = ssh_backend(tmp_path, private_key="-----BEGIN KEY-----\nabc\n-----END KEY-----")
    assert backend.client.settings_identity is not None
    assert os.stat(backend.client.settings_identity).st_mode & 0o777 == 0o600
    command = backend.client.command(
        VolumeRef("v", backend.options.validate({"host": "h"})), "/m", {}
    )
    assert f"IdentityFile={backend.client.settings_identity}" in command.args
    assert not any("BEGIN KEY" in arg for arg in command.args)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"bucket": "Upper"}, "not a bucket name"),
        ({"bucket": "ab"}, "not a bucket name"),
        ({"bucket": "b", "endpoint": "ftp://x"}, "not a bucket name|not an endpoint"),
        ({"bucket": "bkt", "endpoint": "ftp://x"}, "not an endpoint"),
        ({"bucket": "bkt", "prefix": "a/../b"}, "not a key prefix"),
        ({"bucket": "bkt", "cache_size": "lots"}, "not a size"),
        ({"bucket": "bkt", "profile": "p"}, "profile needs option credentials_file"),
    ],
)
def test_s3_rejects_bad_options(tmp_path: Path, options: dict[str, str], message: str) -> None:
    backend = s3_backend(tmp_path)
    with pytest.raises(InvalidOption, match=message):
        backend.validate("v", backend.options.validate(options))


def test_s3_layout(tmp_path: Path) -> None:
    backend = s3_backend(tmp_path)
    plain = VolumeRef("v", backend.options.validate({"bucket": "bkt", "prefix": "/a/b/"}))
    assert backend.describe(plain) == {"endpoint": "AWS S3", "bucket": "bkt", "key": "a/b/v"}
    own = VolumeRef("v", backend.options.validate({"bucket": "bkt", "bucket_per_volume": "1"}))
    assert backend.describe(own)["bucket"] == "bkt-v"


def test_s3_secret_only_in_a_0600_config(tmp_path: Path) -> None:
    backend = s3_backend(tmp_path, access_key_id="AKIDEXAMPLE", secret_access_key=SECRET)
    volume = VolumeRef("v", backend.options.validate({"bucket": "bkt", "cache_size": "1G"}))
    command = backend.client.command(volume, "/mnt/v", {})
    assert not any(SECRET in arg for arg in command.args)
    assert "AWS_CA_BUNDLE" not in (command.env or {})
    config = Path(command.args[command.args.index("--config") + 1])
    assert SECRET in config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600
    assert command.args[command.args.index("--vfs-cache-max-size") + 1] == str(1024**3)
    assert backend.options.redact({"bucket": "bkt"}) == {"bucket": "bkt"}


def test_s3_credentials_file_profiles(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = A\naws_secret_access_key = B\n"
        "[other]\naws_access_key_id = C\naws_secret_access_key = D\n"
    )
    backend = s3_backend(tmp_path)
    options = backend.options.validate(
        {"bucket": "bkt", "credentials_file": str(credentials), "profile": "other"}
    )
    assert backend.remote.credentials(options) == ("C", "D")
    assert backend.remote.credentials(backend.options.validate({"bucket": "bkt"})) == (None, None)


def test_rclone_reason_drops_noise() -> None:
    stderr = (
        "2026/11/28 07:48:20 ERROR : Attempt 1/1 failed with 1 errors\n"
        "2026/11/28 07:48:20 Failed to mkdir: InvalidAccessKeyId: The key does not exist.\n"
        "\tstatus code: 403, request id: abc, host id:\n"
    )
    reason = _rclone_reason(CommandError("x", 1, stderr))
    assert reason == "InvalidAccessKeyId: The key does not exist."


def test_write_secret_is_never_world_readable(tmp_path: Path) -> None:
    path = write_secret(str(tmp_path / "dir" / "secret"), SECRET)
    assert Path(path).read_text() == SECRET
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "dir").st_mode & 0o777 == 0o700
