"""The shape of the cloud family: every provider folder has the same files, the backend class
in backend.py, no module of orlop/ over 400 lines, and no provider importing another's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from orlop.backends import BACKENDS as KINDS
from orlop.backends import backend_class

pytestmark = pytest.mark.unit

ORLOP = Path(__file__).resolve().parents[3] / "orlop"
CLOUD = ORLOP / "backends" / "cloud"
PROVIDER_FILES = {
    "__init__.py",
    "backend.py",  # the backend class, and nothing else
    "provider.py",  # the CloudProvider
    "client.py",  # the SDK's client and its errors
    "settings.py",  # the driver's settings model
    "labels.py",  # how Orlop's labels (and names) are written in this cloud
}
# Optional files, each with one job its docstring names; and names kept from before the
# re-layout (re-exports of labels.py), so code written against them still imports.
OPTIONAL_FILES = {
    "snapshots.py",
    "limits.py",
    "actions.py",  # digitalocean: the volume actions under way
    "attachments.py",  # gce: attach and detach, each waiting for its zone operation
    "devices.py",  # ebs: Xen device names and Nitro serials
    "errors.py",  # gce: the API's error answers as CloudErrors
    "faults.py",  # vsphere: pyVmomi faults as CloudErrors
    "files.py",  # vsphere: where a volume's files are in a datastore
    "folder.py",  # vsphere: the folder that holds the volumes
    "resources.py",  # the API's objects as Disks and Snapshots
    "session.py",  # powerflex: one gateway login per driver
    "vmdisks.py",  # vsphere: a VM's disks and controllers
}
KEPT_NAMES = {"digitalocean": {"tags.py"}, "powerflex": {"names.py"}}


def providers() -> list[Path]:
    return sorted(p for p in CLOUD.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def test_every_cloud_provider_folder_has_the_standard_files() -> None:
    assert [p.name for p in providers()] == [
        "cinder",
        "digitalocean",
        "ebs",
        "gce",
        "powerflex",
        "vsphere",
    ]
    for folder in providers():
        files = {p.name for p in folder.glob("*.py")}
        assert files >= PROVIDER_FILES, f"{folder.name} lacks {sorted(PROVIDER_FILES - files)}"
        extra = files - PROVIDER_FILES - OPTIONAL_FILES - KEPT_NAMES.get(folder.name, set())
        assert not extra, f"{folder.name} has files outside the standard set: {sorted(extra)}"


def test_every_cloud_backend_class_is_in_its_folders_backend_py() -> None:
    cloud_kinds = {k: v for k, v in KINDS.items() if v.startswith("orlop.backends.cloud.")}
    assert sorted(cloud_kinds) == sorted(p.name for p in providers())
    for kind, where in cloud_kinds.items():
        assert where.split(":")[0] == f"orlop.backends.cloud.{kind}.backend"
        assert backend_class(kind).kind == kind


def test_no_module_of_orlop_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ORLOP)): count
        for path in ORLOP.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 400
    }
    assert long == {}  # split it along its responsibilities (docs/ARCHITECTURE.md)


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("folder", providers(), ids=lambda p: p.name)
def test_no_provider_imports_another_providers_package(folder: Path) -> None:
    others = {f"orlop.backends.cloud.{p.name}" for p in providers() if p != folder}
    crossing = {
        f"{path.name} imports {name}"
        for path in folder.rglob("*.py")
        for name in imported_modules(path)
        if any(name == other or name.startswith(other + ".") for other in others)
    }
    assert crossing == set()


def test_the_layout_check_sees_a_crossing_import(tmp_path: Path) -> None:
    module = tmp_path / "provider.py"
    module.write_text("from orlop.backends.cloud.ebs.labels import TAG_PREFIX\n")
    assert "orlop.backends.cloud.ebs.labels" in imported_modules(module)
