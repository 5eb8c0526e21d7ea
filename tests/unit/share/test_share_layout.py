"""The shape of the FUSE and share families: every share vendor folder has the same files,
no module is over 400 lines, and each backend class shows its facts without an instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends import backend_class
from orlop.backends.share.backend import share_capabilities

BACKENDS = Path(__file__).resolve().parents[3] / "orlop" / "backends"
VENDOR_FILES = {
    "__init__.py",
    "api.py",  # the names it had before the re-layout, re-exported
    "backend.py",
    "provider.py",
    "client.py",
    "settings.py",
    "labels.py",
    "limits.py",
}
# Optional files, each with one job its docstring names.
OPTIONAL_FILES = {"snapshots.py", "making.py"}


def vendors() -> list[Path]:
    share = BACKENDS / "share"
    return sorted(p for p in share.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def test_every_share_vendor_folder_has_the_standard_files() -> None:
    assert [p.name for p in vendors()] == ["azurefile", "powerscale"]
    for folder in vendors():
        files = {p.name for p in folder.glob("*.py")}
        assert files >= VENDOR_FILES, f"{folder.name} lacks {sorted(VENDOR_FILES - files)}"
        extra = files - VENDOR_FILES - OPTIONAL_FILES
        assert not extra, f"{folder.name} has files outside the standard set: {sorted(extra)}"


@pytest.mark.parametrize("family", ["fuse", "share"])
def test_no_module_is_over_400_lines(family: str) -> None:
    long = {
        str(path.relative_to(BACKENDS)): count
        for path in (BACKENDS / family).rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 400
    }
    assert long == {}


@pytest.mark.parametrize("kind", ["sshfs", "s3", "azurefile", "powerscale"])
def test_backend_classes_declare_their_facts(kind: str) -> None:
    cls = backend_class(kind)
    assert cls.kind == kind
    assert cls.options.options
    assert cls.settings_model.__name__.endswith("Settings")
    assert cls.capabilities.scope == "global"
    if kind in ("azurefile", "powerscale"):
        snapshots = hasattr(cls, "create_snapshot")
        assert cls.capabilities == share_capabilities(snapshot=snapshots)
        assert snapshots == (kind == "powerscale")
