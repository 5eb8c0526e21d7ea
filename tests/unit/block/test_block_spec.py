"""How a block backend's kind is decided: once, from its device provider (`spec()`), read at
class level (help texts, `kinds_with`, the CLI) and without `__init_subclass__` or classes
built by `type()`. Both ways of declaring a backend keep working: naming the provider class
(`provider_class = P`) or the cloud (`cloud_provider = X`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from orlop.backends import backend_class, kinds_with
from orlop.backends.base import BackendContext, Capabilities
from orlop.backends.block import filesystem
from orlop.backends.block.backend import BlockBackend
from orlop.backends.cloud.backend import CloudBackend
from orlop.backends.cloud.layer import LAYER_OPTIONS, CloudDisks
from orlop.backends.loopfile.provider import LoopFileProvider
from orlop.backends.snapshots.settings import LoopFileSettings
from tests.support.cloud.memory import MemoryCloud, MemoryProvider

pytestmark = pytest.mark.unit

BACKENDS = Path(__file__).resolve().parents[3] / "orlop" / "backends"


class MemoryBackend(CloudBackend):
    cloud_provider = MemoryProvider


class PlainLoopBackend(BlockBackend):
    provider_class = LoopFileProvider


def names(options: object) -> set[str]:
    return set(getattr(options, "options"))  # noqa: B009


def test_a_backend_naming_its_provider_class_gets_the_providers_facts() -> None:
    assert PlainLoopBackend.kind == "loopfile"
    assert PlainLoopBackend.settings_model is LoopFileSettings
    assert names(PlainLoopBackend.options) == names(LoopFileProvider.options) | {
        option.name for option in filesystem.OPTIONS
    }
    assert PlainLoopBackend.capabilities == Capabilities(
        scope="local", snapshot=True, clone=True, restore=True, resize=True, quota=True
    )


def test_a_backend_naming_its_cloud_gets_the_cloud_layers_facts() -> None:
    assert MemoryBackend.kind == "memory"
    assert MemoryBackend.settings_model is MemoryProvider.settings_model
    assert names(MemoryBackend.options) == {option.name for option in LAYER_OPTIONS} | {
        option.name for option in filesystem.OPTIONS
    }
    # the memory provider has no snapshot calls: no snapshot capability
    assert MemoryBackend.capabilities == Capabilities(
        scope="global", exclusive_attach=True, resize=True, quota=True
    )
    checks = [check.name for check in MemoryBackend.host_checks()]
    # the filesystem layer's tools; no fsfreeze command (the FIFREEZE ioctl, host/fsfreeze.py)
    assert "command mkfs.ext4" in checks and "command fsfreeze" not in checks


def test_provider_class_of_a_cloud_backend_still_makes_its_cloud_disks(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    context = BackendContext("mem", str(tmp_path))
    disks = MemoryBackend.provider_class(  # type: ignore[call-arg]
        context, devices=cloud.devices("i-a"), cloud=cloud.provider("i-a")
    )
    assert isinstance(disks, CloudDisks)
    # as the class it was: the cloud layer's own facts, without the filesystem's
    assert MemoryBackend.provider_class.kind == "memory"
    assert names(MemoryBackend.provider_class.options) == {o.name for o in LAYER_OPTIONS}
    assert MemoryBackend.provider_class.capabilities == Capabilities(
        scope="global", exclusive_attach=True
    )
    assert disks.cloud_class is MemoryProvider and disks.kind == "memory"
    backend = MemoryBackend(context, disks)
    assert backend.provider is disks
    assert backend.capabilities == MemoryBackend.capabilities


def test_an_instance_may_decide_its_own_capabilities_and_the_class_keeps_its() -> None:
    class Narrow(PlainLoopBackend):
        pass

    backend = Narrow.__new__(Narrow)
    backend.capabilities = Capabilities(scope="local")
    assert backend.capabilities == Capabilities(scope="local")
    assert Narrow.capabilities.resize is True


@pytest.mark.parametrize("kind", ["ebs", "gce", "vsphere", "cinder", "digitalocean", "powerflex"])
def test_every_cloud_kind_can_snapshot_resize_and_is_global(kind: str) -> None:
    cls = backend_class(kind)
    assert cls.kind == kind
    assert cls.capabilities == Capabilities(
        scope="global", snapshot=True, resize=True, quota=True, exclusive_attach=True
    )
    assert {"preempt", "keep_on_remove", "fs"} <= names(cls.options)
    assert kind in kinds_with("snapshot")


def test_no_backend_builds_classes_or_hooks_subclassing() -> None:
    found = []
    for path in BACKENDS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "__init_subclass__":
                found.append(f"{path.relative_to(BACKENDS)}: __init_subclass__")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "type"
                and len(node.args) == 3
            ):
                found.append(f"{path.relative_to(BACKENDS)}: type(name, bases, dict)")
    assert found == []
