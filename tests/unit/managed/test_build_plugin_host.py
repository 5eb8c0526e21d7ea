"""scripts/build-plugin notices by itself what the host lacks: capabilities, tools, the env."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from orlop.managed.kinds import plugin_kind
from orlop.managed.manifest import manifest

ROOT = Path(__file__).resolve().parents[3]
FULL = "CapBnd:\t000001ffffffffff\n"
NO_SYS_RESOURCE = "CapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n"  # bit 24 cleared


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_plugin", ROOT / "packaging" / "plugin" / "build_plugin.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_plugin", module)
    spec.loader.exec_module(module)
    return module


def test_a_bounding_set_without_sys_resource_is_noticed() -> None:
    builder = _builder()
    assert builder.lacking_capabilities(NO_SYS_RESOURCE, None) == ["CAP_SYS_RESOURCE"]
    assert builder.lacking_capabilities(NO_SYS_RESOURCE, "unix:///run/x.sock") == [
        "CAP_SYS_RESOURCE"
    ]
    assert builder.lacking_capabilities(FULL, None) == []
    # A remote engine's host is not this one: nothing is guessed from ours.
    assert builder.lacking_capabilities(NO_SYS_RESOURCE, "tcp://10.0.0.1:2376") == []


def test_the_lacking_capability_is_left_out_of_config_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    builder = _builder()
    monkeypatch.setattr(builder, "lacking_capabilities", lambda *_: ["CAP_SYS_RESOURCE"])
    drop = builder.capabilities_to_drop([])
    assert drop == ["CAP_SYS_RESOURCE"]
    assert "lacks CAP_SYS_RESOURCE" in capsys.readouterr().err
    config = manifest(plugin_kind("block"), "0", drop)
    assert config["linux"]["capabilities"] == ["CAP_SYS_ADMIN"]
    assert builder.capabilities_to_drop(["CAP_SYS_RESOURCE"]) == ["CAP_SYS_RESOURCE"]  # once


def test_the_script_no_longer_asks_for_the_test_setup() -> None:
    script = (ROOT / "scripts" / "build-plugin").read_text()
    assert "--test" not in script
    assert "debootstrap" in script  # installs it when missing


def test_the_root_filesystem_size_is_checked_against_the_limit() -> None:
    builder = _builder()
    assert builder.ROOTFS_LIMIT_MB == 150
    within, line = builder.size_verdict("block", 135_000_000, 150)
    assert within and line == "root filesystem of block: 135 MB, within 150 MB"
    within, line = builder.size_verdict("powerscale", 489_000_000, 150)
    assert not within and "489 MB, OVER 150 MB" in line
    assert builder.size_verdict("s3", 150_000_001, 150)[0] is False


def test_dependencies_lose_unused_parts_and_huge_docstrings(tmp_path: Path) -> None:
    builder = _builder()
    text = builder.TRIM_LIST.read_text()
    for kept in ("pydo/operations", "isilon_sdk/v9_5_0", "botocore/data"):
        (tmp_path / kept).mkdir(parents=True)
    for dropped in ("pydo/aio", "isilon_sdk/v9_10_0", "isilon_sdk/v9_7_0", "keystoneauth1/tests"):
        (tmp_path / dropped).mkdir(parents=True)
    generated = tmp_path / "pydo/operations/_operations.py"
    doc = '"""' + "example JSON " * 400_000 + '"""'
    generated.write_text(f"{doc}\nclass Ops:\n    {doc}\n    def get(self):\n        {doc}\n")
    generated.write_text(generated.read_text() + "        return 42\n")
    builder.trim.apply(tmp_path, builder.trim.rules(text, "python", "powerscale"))
    assert (tmp_path / "isilon_sdk/v9_5_0").is_dir() and (tmp_path / "pydo/aio").is_dir()
    assert not (tmp_path / "isilon_sdk/v9_10_0").exists()
    assert not (tmp_path / "keystoneauth1/tests").exists()  # every kind's rule
    builder.trim.apply(tmp_path, builder.trim.rules(text, "python", "digitalocean"))
    left = {str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*")}
    assert left == {"pydo/operations", "isilon_sdk/v9_5_0"}  # botocore: only ebs keeps it
    assert generated.stat().st_size < 1000
    namespace: dict[str, object] = {}
    exec(generated.read_text(), namespace)  # still the same code, minus the docstrings
    assert namespace["Ops"]().get() == 42  # type: ignore[operator]
