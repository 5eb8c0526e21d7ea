"""The SQLite store, the configuration loader, and mountinfo parsing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orlop import config as config_module
from orlop.config import load_config
from orlop.core.model import ConfigError, State, Usage, Volume
from orlop.core.store import Store
from orlop.host.mounts import mount_table


def _volume(name: str = "v") -> Volume:
    return Volume(
        "drv", name, "directory", {"mode": "0755"}, {"k": 1}, "2026-01-01T00:00:00Z", State.CREATING
    )


def test_store_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = Store(path)
    volume = _volume()
    store.insert(volume)
    volume.state = State.ATTACHED
    store.update(volume, add_mount="m1")
    store.update(volume, add_mount="m2")
    store.update(volume, drop_mount="m1")
    volume.usage = Usage(used=5, size=10, free=5)
    store.set_usage(volume)
    store.close()
    (loaded,) = Store(path).load()
    assert loaded.state == State.ATTACHED and loaded.mount_ids == {"m2"}
    assert loaded.options == {"mode": "0755"} and loaded.record == {"k": 1}
    assert loaded.usage == Usage(used=5, size=10, free=5)


def test_store_delete_cascades_mounts(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    volume = _volume()
    store.insert(volume)
    store.update(volume, add_mount="m1")
    store.delete("drv", "v")
    assert store.load() == []
    assert store._db.execute("SELECT COUNT(*) FROM mounts").fetchone()[0] == 0


def test_store_refuses_newer_schema(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    Store(path)._db.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="newer Orlop"):
        Store(path)


def test_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No file at the default path: the embedded default applies.
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.yaml"))
    config = load_config(path=None, environ={})
    assert config.source == "embedded default"
    assert config.drivers["orlop"].backend == "directory"
    assert config.state_dir == "/var/lib/orlop"
    assert config.socket_path("orlop") == "/run/docker/plugins/orlop.sock"


def test_config_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "orlop.yaml"
    path.write_text(
        "drivers:\n  fast:\n    backend: directory\n    options: {mode: 0700, uid: 7}\n"
    )
    config = load_config(str(path), environ={"ORLOP_STATE_DIR": "/srv/orlop"})
    assert config.state_dir == "/srv/orlop"
    assert config.drivers["fast"].options == {"mode": "0700", "uid": "7"}
    assert config.source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("drivers: {}\n", "drivers"),
        ("drivers:\n  ../x:\n    backend: directory\n", "invalid driver name"),
        ("drivers:\n  a:\n    backend: directory\n    colour: red\n", "colour"),
        ("state_dir: relative\ndrivers:\n  a: {backend: directory}\n", "absolute path"),
        ("log_level: loud\ndrivers:\n  a: {backend: directory}\n", "log_level"),
        ("- a list\n", "must hold a mapping"),
        ("drivers: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "orlop.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path), environ={})


def test_missing_explicit_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"), environ={})


def test_mountinfo_unescapes(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n"
        "37 35 0:5 / /run rw shared:2 - tmpfs tmpfs rw,size=10m\n"
    )
    first, second = mount_table(str(table))
    assert first.mountpoint == "/mnt/with space" and first.fstype == "ext3"
    assert second.source == "tmpfs" and second.mount_id == 37


def test_sync_soon_flushes_the_wal_in_the_background(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    volume = _volume()
    store.insert(volume, durable=False)
    before = store.background_flushes
    store.sync_soon()
    deadline = time.monotonic() + 5
    while store.background_flushes == before:
        assert time.monotonic() < deadline, "the WAL was never flushed"
        time.sleep(0.01)
    store.close()
    assert [v.name for v in Store(str(tmp_path / "s.db")).load()] == ["v"]
