"""trim.txt never removes what Orlop loads for a kind (no build: this venv's packages).

For each kind a fresh interpreter runs trim_rules.PROBE, as the build does in the trimmed
tree: it imports what the plugin does (the entry point, the daemon; here also the CSI
server) and every module of the kind's backend package together with every absolute
module those modules import, at the top or inside a function (the cloud clients are imported
at first use), plus the modules a client library loads by name when first called (CLIENT_CALLS).
An audit hook records every file opened; no file under site-packages may be one the kind's
[python] rules remove.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orlop.managed.kinds import plugin_kinds

ROOT = Path(__file__).resolve().parents[3]
SITE = Path(sysconfig.get_paths()["purelib"])
ALL_KINDS = sorted(plugin_kinds())
# What a client library loads lazily when Orlop first calls it: modules, then code.
CLIENT_CALLS = {
    "cinder": "import openstack.block_storage.v3._proxy, openstack.compute.v2._proxy",
    # botocore's models are data files, read when a client is made (ebs: ec2 and sts).
    "ebs": "import boto3; [boto3.client(s, region_name='eu-west-1') for s in ('ec2', 'sts')]",
    "gce": "from google.cloud import compute_v1\n"
    "from google.auth.credentials import AnonymousCredentials\n"
    "for name in ('Disks', 'Instances', 'Snapshots', 'ZoneOperations', 'Zones'):\n"
    "    getattr(compute_v1, name + 'Client')(credentials=AnonymousCredentials(), "
    "transport='rest')\n",
}
CSI = "import orlop.frontends.csi.server\n"  # a --csi build's rules are its kind's


def _trim() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "trim_rules", ROOT / "packaging" / "plugin" / "trim_rules.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("trim_rules", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return sys.modules["trim_rules"]


def _trimmed(rules: Any, into: Path) -> None:
    """A package whose __init__ the rules rewrite (prune-imports), as the build leaves it, in
    `into`: directories made, files linked to this venv's, the rewritten one a copy of its
    own; then the rules' removals and prune-imports (never docstrings: they would write
    through the links)."""
    trim = _trim()
    for name in rules.prune_imports:
        package = (SITE / name).parent
        for directory, _, files in os.walk(package):
            mirror = into / Path(directory).relative_to(SITE)
            mirror.mkdir(parents=True, exist_ok=True)
            for file in files:
                (mirror / file).symlink_to(Path(directory) / file)
        (into / name).unlink()
        shutil.copyfile(SITE / name, into / name)
    only = trim.Rules(remove=rules.remove, keep=rules.keep, prune_imports=rules.prune_imports)
    trim.apply(into, only)


def _loaded(kind: str, rules: Any, tmp_path: Path) -> tuple[list[str], list[str]]:
    """The site-packages files a kind's plugin loads (relative), and imports that failed."""
    trimmed = tmp_path / "trimmed"
    _trimmed(rules, trimmed)
    result = subprocess.run(
        [sys.executable, "-c", _trim().PROBE, kind, CSI + CLIENT_CALLS.get(kind, "")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{trimmed}:{ROOT}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    relative = []
    for file in found["files"]:
        for tree in (SITE, trimmed):
            if file.startswith(f"{tree}/"):
                path = Path(file).relative_to(tree)
                if path.parent.name == "__pycache__":  # the build compiles after trimming
                    path = path.parent.parent / (path.name.split(".")[0] + ".py")
                relative.append(str(path))
    return relative, found["failed"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_trim_rules_keep_every_file_the_kind_loads(kind: str, tmp_path: Path) -> None:
    trim = _trim()
    rules = trim.rules((ROOT / "packaging" / "plugin" / "trim.txt").read_text(), "python", kind)
    files, failed = _loaded(kind, rules, tmp_path)
    assert not failed, failed  # this venv has every client: all of them import
    assert len(files) > 50  # pydantic, botocore, the kind's client: the probe saw them
    removed = [f for f in files if rules.removes(f)]
    assert removed == [], f"trim.txt removes files the {kind} plugin loads: {removed[:20]}"


def test_the_rules_remove_what_they_say(tmp_path: Path) -> None:
    trim = _trim()
    text = (
        "[rootfs]\nusr/share/man\n"
        "[python]\n*/tests\nbotocore/data/*/\n!botocore/data/ec2\n"
        "[python powerscale]\nisilon_sdk/v[0-9]*\n!isilon_sdk/v9_5_0\ndocstrings isilon_sdk\n"
    )
    made = [
        "botocore/data/ec2/2016-11-15/service-2.json.gz",
        "botocore/data/iam/2010-05-08/service-2.json.gz",
        "botocore/data/endpoints.json.gz",
        "isilon_sdk/v9_5_0/api.py",
        "isilon_sdk/v9_10_0/api.py",
        "isilon_sdk/__init__.py",
        "openstack/tests/unit/x.py",
    ]
    for path in made:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text('"""doc"""\nX = 1\n')
    powerscale = trim.rules(text, "python", "powerscale")
    assert [powerscale.removes(p) for p in made] == [False, True, False, False, True, False, True]
    assert trim.rules(text, "python", "gce").removes("isilon_sdk/v9_10_0/api.py") is False
    assert trim.rules(text, "rootfs").remove == ["usr/share/man"]
    trim.apply(tmp_path, powerscale)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == [p for p in sorted(made) if not powerscale.removes(p)]
    assert (tmp_path / "isilon_sdk/v9_5_0/api.py").read_text() == "X = 1\n"


@pytest.mark.parametrize(
    "text, error",
    [
        ("usr/share/man\n", "before any [section]"),
        ("[rootfs block]\nx\n", "the same for every kind"),
        ("[site]\nx\n", "[rootfs] or [python KIND"),
        ("[python]\n/usr/lib\n", "must be relative"),
        ("[python]\na/../b\n", "must be relative"),
    ],
)
def test_bad_trim_rules_are_refused_with_the_line(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=r"trim\.txt line") as raised:
        _trim().parse(text)
    assert error in str(raised.value)


def test_prune_imports_and_sourceless_leave_an_importable_package(tmp_path: Path) -> None:
    trim = _trim()
    package = tmp_path / "gen"
    for service in ("disks", "routers", "zones"):
        (package / "services" / service).mkdir(parents=True)
        (package / "services" / service / "__init__.py").write_text(f"NAME = {service!r}\n")
    (package / "services" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "from .services.disks import NAME as DisksClient\n"
        "from .services.routers import NAME as RoutersClient\n"
        "from .services.zones import NAME as ZonesClient\n"
        "__all__ = ('DisksClient', 'RoutersClient', 'ZonesClient', 'Other')\n"
        "Other = 1\n"
    )
    text = (
        "[python]\ngen/services/*\n!gen/services/__init__.py\n!gen/services/disks\n"
        "!gen/services/zones\nprune-imports gen/__init__.py\nsourceless gen\n"
    )
    rules = trim.rules(text, "python", "gce")
    trim.apply(tmp_path, rules)
    trim.make_sourceless(tmp_path, rules, "/site")
    assert not (package / "services" / "routers").exists()
    assert not list(package.rglob("*.py")) and not list(package.rglob("__pycache__"))
    assert (package / "__init__.pyc").is_file()
    script = "import gen; print(gen.__all__, gen.DisksClient, gen.ZonesClient, gen.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:4] == ["('DisksClient',", "'ZonesClient',", "'Other')", "disks"]
    assert result.stdout.strip().endswith("gen/__init__.pyc")


@pytest.mark.skipif(not shutil.which("readelf"), reason="readelf is binutils' (setup installs it)")
def test_unlinked_libraries_go_and_linked_ones_stay(tmp_path: Path) -> None:
    """Real ELF files of this host: openssl links libssl, which links libcrypto (kept
    through libssl too); nothing links libz, so it goes, with its symlink."""
    lib = Path("/lib/x86_64-linux-gnu")
    needed = ["libssl.so.3", "libcrypto.so.3", "libz.so.1"]
    if not Path("/usr/bin/openssl").is_file() or not all((lib / n).exists() for n in needed):
        pytest.skip("this host lacks openssl, libssl 3 or libz")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    shutil.copy2("/usr/bin/openssl", tmp_path / "usr/bin/openssl")
    shutil.copy2(lib / "libssl.so.3", tmp_path / "lib/libssl.so.3")
    shutil.copy2(lib / "libcrypto.so.3", tmp_path / "lib/libcrypto.so.3")
    shutil.copy2((lib / "libz.so.1").resolve(), tmp_path / "lib/libz.so.1.real")
    (tmp_path / "lib/libz.so.1").symlink_to("libz.so.1.real")
    trim = _trim()
    rules = trim.rules("[rootfs]\nunlinked lib/lib*\n", "rootfs")
    trim.apply(tmp_path, rules)
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == [
        "libcrypto.so.3",
        "libssl.so.3",
    ]
    (tmp_path / "usr/bin/openssl").unlink()
    trim.apply(tmp_path, rules)  # now nothing links libssl, so nothing links libcrypto
    assert list((tmp_path / "lib").iterdir()) == []


def test_only_ebs_keeps_botocore_and_its_models() -> None:
    trim = _trim()
    text = (ROOT / "packaging" / "plugin" / "trim.txt").read_text()
    model = "botocore/data/ec2/2016-11-15/service-2.json.gz"
    ebs = trim.rules(text, "python", "ebs")
    assert not ebs.removes(model) and not ebs.removes("botocore/client.py")
    assert ebs.removes("botocore/data/iam/2010-05-08/service-2.json.gz")
    for kind in sorted(set(ALL_KINDS) - {"ebs"}):
        rules = trim.rules(text, "python", kind)
        assert rules.removes(model) and rules.removes("boto3/__init__.py"), kind


def test_the_csi_descriptor_keeps_its_source_in_a_sourceless_tree(tmp_path: Path) -> None:
    """The CSI frontend parses ember-csi's csi_pb2.py as text (orlop/frontends/csi/messages.py):
    the real trim.txt byte-compiles every dependency but must leave that file as it is."""
    from orlop.frontends.csi import messages

    trim = _trim()
    spec = importlib.util.find_spec(messages.DESCRIPTOR_PACKAGE)
    assert spec is not None and spec.submodule_search_locations
    installed = Path(next(iter(spec.submodule_search_locations)))
    package = tmp_path / "ember_csi"
    (package / "v1_1_0").mkdir(parents=True)
    shutil.copy2(installed / "__init__.py", package / "__init__.py")
    shutil.copy2(installed / "v1_1_0" / "__init__.py", package / "v1_1_0" / "__init__.py")
    shutil.copy2(installed / "v1_1_0" / "csi_pb2.py", package / "v1_1_0" / "csi_pb2.py")
    rules = trim.rules((ROOT / "packaging" / "plugin" / "trim.txt").read_text(), "python", "ebs")
    trim.make_sourceless(tmp_path, rules, "/site")
    assert not (package / "__init__.py").exists() and (package / "__init__.pyc").is_file()
    kept = package / "v1_1_0" / "csi_pb2.py"
    assert kept.is_file()
    assert messages.serialized_descriptor(str(kept)).startswith(b"\n")  # a FileDescriptorProto
