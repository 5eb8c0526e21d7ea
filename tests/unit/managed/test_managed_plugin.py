"""Managed plugin: config.json and the environment → configuration mapping, for every kind."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import socket
import stat
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from pydantic import Field, SecretStr

from orlop.backends import BACKENDS
from orlop.backends.settings import BackendSettings
from orlop.config import load_config
from orlop.core.model import ConfigError
from orlop.frontends.http import HttpServer, adopt_socket
from orlop.managed import start
from orlop.managed.env import driver_values, plugin_config
from orlop.managed.kinds import plugin_kind, plugin_kinds
from orlop.managed.manifest import manifest
from orlop.managed.paths import STATE_DIR
from orlop.managed.start import refuse_all
from tests.support.memory_backend import MemoryBackend

ROOT = Path(__file__).resolve().parents[3]
ALL_KINDS = sorted(plugin_kinds())


class FakeSettings(BackendSettings):
    region: str | None = Field(default=None, description="where the storage is")
    token: SecretStr | None = None
    verbose: bool = False
    timeout: float = 2.5
    zones: list[str] = Field(default_factory=list)
    size: str | None = None  # also an option of MemoryBackend: the option gets DEFAULT_


class SettingsBackend(MemoryBackend):
    kind: ClassVar[str] = "fakekind"
    settings_model = FakeSettings


@pytest.fixture
def fake_kind(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(BACKENDS, "fakekind", f"{__name__}:SettingsBackend")
    return "fakekind"


def _env(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in config["env"]}


def test_kinds_cover_every_backend_with_the_docker_names() -> None:
    kinds = plugin_kinds()
    assert {kind.backend for kind in kinds.values()} == set(BACKENDS)
    assert kinds["local"].backend == "directory"
    assert kinds["block"].backend == "loopfile"
    assert {"local", "block", "ebs", "s3", "sshfs"} <= set(kinds)
    assert plugin_kind("loopfile").name == "block"  # a backend kind names its plugin too
    with pytest.raises(ConfigError, match="unknown plugin kind 'nfs': known kinds are"):
        plugin_kind("nfs")


@pytest.mark.parametrize("name", ALL_KINDS)
def test_manifest_of_every_kind(name: str) -> None:
    kind = plugin_kind(name)
    config = manifest(kind, "9.9.9")
    json.dumps(config)  # config.json is JSON
    assert config["interface"] == {"types": ["docker.volumedriver/1.0"], "socket": kind.socket}
    assert config["network"] == {"type": "host"}
    assert config["propagatedMount"] == STATE_DIR
    assert config["entrypoint"] == ["/usr/bin/python3", "-m", "orlop.managed.start"]
    assert "CAP_SYS_ADMIN" in config["linux"]["capabilities"]
    env = _env(config)
    assert len(env) == len(config["env"]), "a variable is declared twice"
    assert env["ORLOP_PLUGIN_KIND"] == {
        "name": "ORLOP_PLUGIN_KIND",
        "description": "the driver kind this plugin was built for",
        "settable": [],
        "value": name,
    }
    assert env["ORLOP_LOG_LEVEL"]["settable"] == ["value"]
    assert env["ORLOP_LOG_LEVEL"]["value"] == "info"
    assert "/usr/sbin" in env["PATH"]["value"].split(":")
    prefix = kind.backend.upper()
    settings = kind.settings_model().model_fields
    for setting in settings:
        assert env[f"{prefix}_{setting.upper()}"]["settable"] == ["value"]
    for option in kind.backend_class().options.options:
        infix = "DEFAULT_" if option in settings else ""
        assert env[f"{prefix}_{infix}{option.upper()}"]["settable"] == ["value"]
    for variable in env:
        assert variable.replace("_", "").isalnum() and variable.isupper(), variable


def test_block_kind_sees_devices_and_grows_online() -> None:
    config = manifest(plugin_kind("block"), "1")
    assert config["linux"]["capabilities"] == ["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"]
    assert config["linux"]["allowAllDevices"] is True
    assert [(m["source"], m["destination"], m["type"]) for m in config["mounts"]] == [
        ("/dev", "/dev", "bind")
    ]
    env = _env(config)
    assert env["LOOPFILE_SIZE"]["value"] == "10G"  # the embedded default, visible in inspect
    assert env["LOOPFILE_FS"]["value"] == "ext4"
    assert env["LOOPFILE_MOUNT_OPTIONS"]["value"] == ""


@pytest.mark.parametrize("name", ["s3", "sshfs"])
def test_fuse_kinds_get_dev_fuse_only(name: str) -> None:
    config = manifest(plugin_kind(name), "1")
    assert config["linux"]["devices"] == [{"path": "/dev/fuse"}]
    assert config["linux"]["allowAllDevices"] is False
    assert config["linux"]["capabilities"] == ["CAP_SYS_ADMIN"]
    assert config["mounts"] == []


def test_local_kind_asks_for_nothing_but_mounting() -> None:
    config = manifest(plugin_kind("local"), "1")
    assert config["linux"] == {
        "capabilities": ["CAP_SYS_ADMIN"],
        "allowAllDevices": False,
        "devices": [],
    }


def test_dropping_a_capability() -> None:
    kind = plugin_kind("block")
    config = manifest(kind, "1", drop={"CAP_SYS_RESOURCE"})
    assert config["linux"]["capabilities"] == ["CAP_SYS_ADMIN"]
    with pytest.raises(ConfigError, match="every plugin kind mounts"):
        manifest(kind, "1", drop={"CAP_SYS_ADMIN"})
    with pytest.raises(ConfigError, match="not a capability name: sys_resource"):
        manifest(kind, "1", drop={"sys_resource"})
    # What a kind does not ask for is dropped already: one flag serves every kind.
    s3 = manifest(plugin_kind("s3"), "1", drop={"CAP_SYS_RESOURCE"})
    assert s3["linux"]["capabilities"] == ["CAP_SYS_ADMIN"]


def _required(name: str) -> dict[str, str]:
    """A value for each required setting of a kind (by type: these only pass validation)."""
    kind = plugin_kind(name)
    values = {}
    for setting, info in kind.settings_model().model_fields.items():
        if info.is_required():
            example = "https://storage.example" if "url" in setting else "x"
            values[f"{kind.prefix}_{setting.upper()}"] = example
    return values


@pytest.mark.parametrize("name", ALL_KINDS)
def test_every_kind_loads_its_embedded_default(name: str) -> None:
    environ = {"ORLOP_PLUGIN_KIND": name, "ORLOP_LOG_LEVEL": "debug", **_required(name)}
    kind = plugin_kind(name)
    try:
        config = load_config(environ=environ)
    except ConfigError as error:
        # A kind whose settings need one of several (a token or a token file): the message
        # names the variables to set.
        assert re.search(rf"\b{kind.prefix}_[A-Z_]+ is [a-z_]+", str(error)), str(error)
        return
    assert config.state_dir == STATE_DIR
    assert config.socket_path(name) == f"/run/docker/plugins/{kind.socket}"
    assert config.admin_socket == "/run/docker/plugins/admin.sock"
    assert config.log_level == "debug"
    assert list(config.drivers) == [name]
    assert config.drivers[name].backend == kind.backend
    assert config.drivers[name].options == kind.defaults
    assert config.source == f"managed plugin {name} (environment)"


@pytest.mark.parametrize("name", [n for n in ALL_KINDS if _required(n)])
def test_a_missing_required_setting_names_its_variable(name: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(environ={"ORLOP_PLUGIN_KIND": name})
    assert f"the {name} plugin needs " in str(error.value)
    for variable in _required(name):
        assert variable in str(error.value)
    assert "docker plugin set PLUGIN NAME=VALUE" in str(error.value)


def test_block_variables_become_driver_defaults() -> None:
    options, settings = driver_values(
        plugin_kind("block"),
        {"LOOPFILE_SIZE": "2G", "LOOPFILE_MOUNT_OPTIONS": "noatime", "LOOPFILE_FS": ""},
    )
    # An empty variable is unset: the embedded default stays.
    assert options == {"size": "2G", "fs": "ext4", "mount_options": "noatime"}
    assert settings == {}


def test_an_explicit_config_file_wins_over_plugin_mode(tmp_path: Path) -> None:
    path = tmp_path / "orlop.yaml"
    path.write_text("drivers: {mine: {backend: directory}}\n")
    config = load_config(str(path), environ={"ORLOP_PLUGIN_KIND": "block"})
    assert list(config.drivers) == ["mine"]


def test_plugin_kind_must_be_the_canonical_name() -> None:
    with pytest.raises(ConfigError, match="ORLOP_PLUGIN_KIND must be 'block', not 'loopfile'"):
        plugin_config({"ORLOP_PLUGIN_KIND": "loopfile"})


def test_stray_variable_of_the_kind_stops_the_daemon() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(environ={"ORLOP_PLUGIN_KIND": "block", "LOOPFILE_SIZ": "1G"})
    assert "unknown variable LOOPFILE_SIZ for the block plugin" in str(error.value)
    assert "LOOPFILE_SIZE" in str(error.value)


def test_settings_variables_are_typed_like_yaml(fake_kind: str) -> None:
    kind = plugin_kind(fake_kind)
    env = _env(manifest(kind, "1"))
    assert env["FAKEKIND_REGION"]["description"] == "where the storage is"
    assert "secret" in env["FAKEKIND_TOKEN"]["description"]
    assert env["FAKEKIND_TIMEOUT"]["description"].endswith("(default 2.5)")
    assert "FAKEKIND_SIZE" in env and "FAKEKIND_DEFAULT_SIZE" in env  # setting, option
    options, settings = driver_values(
        kind,
        {
            "FAKEKIND_REGION": "eu-west-1",
            "FAKEKIND_TOKEN": "s3cr3t",
            "FAKEKIND_VERBOSE": "true",
            "FAKEKIND_TIMEOUT": "7",
            "FAKEKIND_ZONES": '["a", "b"]',
            "FAKEKIND_SIZE": "setting",
            "FAKEKIND_DEFAULT_SIZE": "5G",
            "FAKEKIND_LABEL": "x",
        },
    )
    assert options == {"size": "5G", "label": "x"}
    # Plain values, secrets in clear: the backend's own parse sees what YAML would give it.
    assert settings == {
        "region": "eu-west-1",
        "token": "s3cr3t",
        "verbose": True,
        "timeout": 7.0,
        "zones": ["a", "b"],
        "size": "setting",
    }


def test_bad_setting_value_names_the_variable(fake_kind: str) -> None:
    kind = plugin_kind(fake_kind)
    with pytest.raises(ConfigError) as error:
        driver_values(kind, {"FAKEKIND_TIMEOUT": "soon"})
    assert "timeout" in str(error.value) and "FAKEKIND_TIMEOUT is timeout" in str(error.value)
    with pytest.raises(ConfigError, match="FAKEKIND_ZONES must be JSON"):
        driver_values(kind, {"FAKEKIND_ZONES": "a,b"})


def test_secret_setting_never_in_error_messages(fake_kind: str) -> None:
    with pytest.raises(ConfigError) as error:
        driver_values(plugin_kind(fake_kind), {"FAKEKIND_TOKEN": "s3cr3t", "FAKEKIND_VERBOSE": "x"})
    assert "s3cr3t" not in str(error.value)


def test_entry_point_binds_before_serving_and_the_server_adopts_it(tmp_path: Path) -> None:
    path = str(tmp_path / "plugins" / "block.sock")
    os.makedirs(os.path.dirname(path))
    Path(path).write_text("")  # a leftover of the previous run of this plugin
    listener = start.bind(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    early.connect(path)  # Docker's probe: accepted before any server runs
    early.sendall(b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")

    async def serve() -> bytes:
        server = HttpServer({b"/Plugin.Activate": lambda body: (200, b'{"Implements": []}')})
        adopt_socket(path, listener)
        await server.start(path, mode=0o600)
        try:
            loop = asyncio.get_running_loop()
            early.setblocking(False)
            return await asyncio.wait_for(loop.sock_recv(early, 4096), 10)
        finally:
            await server.close()

    try:
        answer = asyncio.run(serve())
    finally:
        early.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b'{"Implements": []}')
    assert not os.path.exists(path)  # closed and removed like any other socket


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_plugin", ROOT / "packaging" / "plugin" / "build_plugin.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_plugin", module)
    spec.loader.exec_module(module)
    return module


def test_debian_packages_per_kind_come_from_doctor_checks() -> None:
    builder = _builder()
    block = builder.debian_packages(plugin_kind("block"))
    assert {"python3", "e2fsprogs", "xfsprogs", "btrfs-progs", "util-linux"} <= set(block)
    assert {"rclone", "fuse3", "python3"} <= set(builder.debian_packages(plugin_kind("s3")))
    assert "sshfs" in builder.debian_packages(plugin_kind("sshfs"))
    assert "rclone" not in block and "python3-minimal" not in block
    for name in ALL_KINDS:
        assert "python3" in builder.debian_packages(plugin_kind(name))


def test_debian_mirror_from_apt_sources(tmp_path: Path) -> None:
    builder = _builder()
    (tmp_path / "sources.list.d").mkdir()
    assert builder.debian_mirror("bookworm", str(tmp_path)) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n"
    )
    assert builder.debian_mirror("bookworm", str(tmp_path)) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\n# a note\nURIs: http://deb822.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert builder.debian_mirror("bookworm", str(tmp_path)) == "http://deb822.example/debian"
    assert builder.debian_mirror("trixie", str(tmp_path)) == "http://deb.debian.org/debian"


def test_trim_never_removes_the_root(tmp_path: Path) -> None:
    builder = _builder()
    rootfs = tmp_path / "rootfs"
    made = [
        "usr/share/man/man1/x.1",
        "usr/share/doc/pkg/copyright",
        "usr/share/doc/pkg/NEWS",
        "var/lib/apt/lists/x",
        "usr/bin/python3",
        "usr/lib/x86_64-linux-gnu/libicudata.so",
    ]
    for path in made:
        (rootfs / path).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / path).write_text("x")
    builder.trim_rootfs(rootfs)
    left = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*") if p.is_file())
    assert left == ["usr/bin/python3", "usr/share/doc/pkg/copyright"]


def test_packages_are_read_from_fix_texts() -> None:
    from orlop.managed.kinds import _apt_packages

    assert _apt_packages("apt-get install e2fsprogs") == ["e2fsprogs"]
    assert _apt_packages("apt-get install ab b+c") == ["ab", "b+c"]
    assert _apt_packages("apt-get install nfs-common, on a kernel with nfs") == ["nfs-common"]
    assert _apt_packages("modprobe loop") == []
    assert _apt_packages("apt-get install the package") == ["the", "package"]  # trusted text


def test_a_plugin_that_cannot_start_answers_every_call_with_the_reason(tmp_path: Path) -> None:
    path = str(tmp_path / "block.sock")
    adopt_socket(path, start.bind(path))

    async def call(endpoint: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"POST " + endpoint + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        body = await reader.readexactly(length)
        writer.close()
        return body

    async def scenario() -> tuple[bytes, bytes]:
        server = asyncio.create_task(refuse_all(path, "the block plugin needs LOOPFILE_X"))
        try:
            create = await asyncio.wait_for(call(b"/VolumeDriver.Create"), 10)
            activate = await asyncio.wait_for(call(b"/Plugin.Activate"), 10)
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
        return create, activate

    create, activate = asyncio.run(scenario())
    assert json.loads(create) == {"Err": "the block plugin needs LOOPFILE_X"}
    assert json.loads(activate) == {"Implements": ["VolumeDriver"]}
    assert not os.path.exists(path)


def test_prune_removes_unused_layers_and_killed_builds(tmp_path: Path) -> None:
    builder = _builder()
    for name in ("base-old", "rootfs-block-old", "deps-new", "tmp-1234", "debs"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text("x")
    week_ago = time.time() - 7 * 86400
    for name in ("base-old", "rootfs-block-old", "debs"):
        os.utime(tmp_path / name, (week_ago, week_ago))
    builder.prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debs", "deps-new"]
