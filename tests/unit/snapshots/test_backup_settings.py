"""Backup settings of the local backends: refused at start, clearly, when they cannot work;
secrets only ever as file names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.directory.backend import DirectoryBackend
from orlop.backends.loopfile.provider import LoopFileBackend
from orlop.backends.snapshots.backups import repository_for
from orlop.backends.snapshots.settings import LocalSettings
from orlop.core.model import ConfigError


def _secret(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_refused_settings(tmp_path: Path) -> None:
    password = _secret(tmp_path / "pass", "secret-password\n")
    loose = _secret(tmp_path / "loose", "secret-password\n", 0o644)
    env = _secret(tmp_path / "env", "AWS_ACCESS_KEY_ID=a\nnot a variable\n")
    cases = [
        ({"backup_repository": "s3:http://h/b"}, "needs backup_password_file"),
        ({"backup_password_file": password}, "need backup_repository"),
        ({"backup_repository": "/r", "backup_password_file": "pass"}, "absolute path"),
        ({"backup_repository": "/r", "backup_password_file": loose}, "chmod 600"),
        ({"backup_repository": "/r", "backup_password_file": str(tmp_path / "no")}, "No such"),
        (
            {"backup_repository": "/r", "backup_password_file": password, "backup_env_file": env},
            "line 2: expected KEY=VALUE",
        ),
        ({"keep_daily": 0}, "greater than or equal to 1"),
        ({"backup_repo": "/r"}, "unknown directory setting backup_repo"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigError, match=message):
            DirectoryBackend(BackendContext("d", str(tmp_path / "state"), settings=settings))
    with pytest.raises(ConfigError, match="unknown loopfile setting"):
        LoopFileBackend(BackendContext("b", str(tmp_path / "blk"), settings={"colour": "red"}))


def test_secrets_stay_off_the_command_line(tmp_path: Path) -> None:
    password = _secret(tmp_path / "pass", "secret-password\n")
    env = _secret(tmp_path / "env", "# S3\nexport AWS_SECRET_ACCESS_KEY='s3cr3t'\n")
    settings = LocalSettings.parse(
        "directory",
        {
            "backup_repository": "sftp://backup@127.0.0.1:2222//srv/restic",
            "backup_password_file": password,
            "backup_env_file": env,
            "backup_ssh_identity": "/root/.ssh/id",
            "backup_ssh_known_hosts": "/etc/orlop/kh",
        },
    )
    repository = repository_for(settings, str(tmp_path / "cache"))
    assert repository is not None
    args = " ".join(repository._args("snapshots"))
    assert "secret-password" not in args and "s3cr3t" not in args
    assert "-p 2222" in args and "-i /root/.ssh/id" in args and "backup@127.0.0.1 -s sftp" in args
    environment = repository._env()
    assert environment["RESTIC_PASSWORD_FILE"] == password
    assert environment["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    assert "secret-password" not in environment.values()
    assert os.stat(password).st_mode & 0o077 == 0
