"""Build Orlop's Docker managed plugin for one driver kind; `scripts/build-plugin` runs this.

    scripts/build-plugin KIND [--name NAME] [--cache-dir DIR] [--mirror URL] [--no-create]

1. A Debian root filesystem: `debootstrap --variant=minbase` with python3 (full: the minimal
   one has no json) and the packages the kind's doctor checks name, trimmed (trim.txt).
   Cached under --cache-dir by the hash of its inputs (suite, packages, trim list).
2. Orlop's wheel, built from this checkout, with its pinned dependencies, installed into
   /usr/local/lib/python3.11/dist-packages, byte-compiled, shared objects stripped. Cached
   by the hash of the base and of Orlop's sources.
3. A staging directory: config.json (orlop.managed.manifest) and the root filesystem,
   hard-linked from the cache; `docker plugin create NAME DIR` on the engine DOCKER_HOST
   points to. The plugin's name is printed last (with --no-create: the staging directory).

Debian packages come from this host's apt mirror for the suite (or --mirror); Python
packages from the index pip is configured with. Everything else is offline.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from orlop import __version__  # noqa: E402
from orlop.host.mounts import mounts_under, unmount  # noqa: E402
from orlop.host.run import CommandError, run  # noqa: E402
from orlop.managed.csi import csi_manifest  # noqa: E402
from orlop.managed.kinds import PluginKind, plugin_kind  # noqa: E402
from orlop.managed.manifest import manifest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trim_rules as trim  # noqa: E402

SUITE = "bookworm"
PYTHON = "python3.11"  # bookworm's; the wheels are installed by this host's python3.11
SITE_PACKAGES = f"usr/local/lib/{PYTHON}/dist-packages"  # on Debian python3's sys.path
BASE_PACKAGES = ("python3", "ca-certificates")
# Debian packages a kind needs that its doctor checks do not name (explicit, by kind).
EXTRA_PACKAGES: dict[str, tuple[str, ...]] = {}
HERE = Path(__file__).resolve().parent
TRIM_LIST = HERE / "trim.txt"
DEFAULT_CACHE = "/var/cache/orlop/plugin"
DEBOOTSTRAP_TIMEOUT = 1800.0
PIP_TIMEOUT = 900.0
CREATE_TIMEOUT = 900.0
ROOTFS_LIMIT_MB = 150  # issue 20: every kind's root filesystem at most this (MB, 10^6 bytes)


def log(message: str) -> None:
    print(f"build-plugin: {message}", file=sys.stderr, flush=True)


def debian_packages(kind: PluginKind) -> list[str]:
    return sorted({*BASE_PACKAGES, *kind.debian_packages(), *EXTRA_PACKAGES.get(kind.name, ())})


def debian_mirror(suite: str = SUITE, apt_dir: str = "/etc/apt") -> str:
    """The first Debian archive this host's apt sources serve `suite` from."""
    for path in sorted(glob.glob(f"{apt_dir}/sources.list.d/*.sources")):
        for stanza in Path(path).read_text(errors="replace").split("\n\n"):
            fields = _deb822(stanza)
            if (
                "deb" in fields.get("types", "").split()
                and suite in fields.get("suites", "").split()
                and fields.get("enabled", "yes") != "no"
                and fields.get("uris")
            ):
                return fields["uris"].split()[0]
    for path in [f"{apt_dir}/sources.list", *sorted(glob.glob(f"{apt_dir}/sources.list.d/*.list"))]:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text(errors="replace").splitlines():
                words = [w for w in line.split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
    return "http://deb.debian.org/debian"


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def source_digest() -> str:
    """Hash of what goes into Orlop's wheel, and of this builder."""
    files = [ROOT / "pyproject.toml", ROOT / "README.md", Path(__file__)]
    files += sorted(
        p for p in (ROOT / "orlop").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    hasher = hashlib.sha256()
    for path in files:
        hasher.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()[:16]


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One build at a time per cache (two test sessions may build at once)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def scratch(cache: Path) -> Iterator[Path]:
    """A work directory in the cache (same filesystem: renamed into place when done)."""
    path = cache / f"tmp-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        _discard(path)


def _discard(path: Path) -> None:
    for mounted in mounts_under(str(path)):  # debootstrap's /proc and /sys, deepest first
        with contextlib.suppress(Exception):
            unmount(mounted, lazy_if_busy=True)
    shutil.rmtree(path, ignore_errors=True)


def base_rootfs(kind: PluginKind, cache: Path, mirror: str) -> Path:
    packages = debian_packages(kind)
    rules = trim.rules(TRIM_LIST.read_text(), "rootfs")
    key = digest("base", SUITE, "minbase", packages, rules.text(with_sourceless=False))
    final = cache / f"base-{key}"
    if final.is_dir():
        log(f"Debian root filesystem from cache ({final.name})")
        os.utime(final)  # used: prune() keeps it
        return final
    started = time.monotonic()
    log(f"debootstrap {SUITE} from {mirror} with {', '.join(packages)}")
    with scratch(cache) as work:
        target = work / "rootfs"
        debs = cache / "debs"
        debs.mkdir(exist_ok=True)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                f"--cache-dir={debs}",
                SUITE,
                str(target),
                mirror,
            ],
            timeout=DEBOOTSTRAP_TIMEOUT,
        )
        trim_rootfs(target)
        target.rename(final)
    log(f"Debian root filesystem built in {time.monotonic() - started:.0f} s")
    return final


def trim_rootfs(rootfs: Path) -> None:
    """Remove what a plugin never reads: docs (copyright files stay), caches, apt lists, …"""
    trim.apply(rootfs, trim.rules(TRIM_LIST.read_text(), "rootfs"))
    for path in (rootfs / "usr/share/doc").rglob("*"):
        if path.is_file() and path.name != "copyright":
            path.unlink()


def orlop_rootfs(kind: PluginKind, base: Path, cache: Path, csi: bool = False) -> Path:
    """The base + Orlop's dependencies (a cached layer of its own: they change rarely,
    Orlop often) + Orlop's wheel."""
    extras = [kind.backend] if kind.backend in _optional() else []
    if csi:  # the CSI frontend's gRPC and protobuf: a volume plugin never serves CSI
        extras.append("csi")
    text = TRIM_LIST.read_text()
    rules = (trim.rules(text, "rootfs"), trim.rules(text, "python", kind.name))
    deps = dependencies_rootfs(base, cache, extras, rules, _no_deps() if csi else [])
    key = digest("orlop", deps.name, source_digest())
    final = cache / f"rootfs-{kind.name}-{key}"
    if final.is_dir():
        log(f"root filesystem from cache ({final.name})")
        os.utime(final)
        return final
    started = time.monotonic()
    with scratch(cache) as work:
        target = work / "rootfs"
        run(["cp", "-a", "--reflink=auto", str(deps), str(target)], timeout=600)
        install_orlop(target, work)
        verify(kind, target)
        target.rename(final)
    log(f"Orlop installed in {time.monotonic() - started:.0f} s")
    return final


def dependencies_rootfs(
    base: Path,
    cache: Path,
    extras: list[str],
    rules: tuple[trim.Rules, trim.Rules],
    without_deps: list[str],
) -> Path:
    """The base + the pinned dependencies of Orlop and `extras`, trimmed by `rules` (the
    kind's [python] rules of trim.txt; [rootfs]'s sourceless ones too: this layer
    byte-compiles), shared objects stripped, byte-compiled."""
    system, python = rules
    requirements = sorted(_project().get("dependencies", []))
    for extra in extras:
        # An extra may name another (orlop[cinder]); only third-party pins go in this layer.
        requirements += sorted(r for r in _optional()[extra] if not r.startswith("orlop"))
    builder = Path(__file__).read_text() + (HERE / "trim_rules.py").read_text()
    key = digest("deps", base.name, requirements, without_deps, system.text(), python.text())
    key = digest(key, builder)
    final = cache / f"deps-{key}"
    if final.is_dir():
        os.utime(final)
        return final
    started = time.monotonic()
    with scratch(cache) as work:
        target = work / "rootfs"
        run(["cp", "-a", "--reflink=auto", str(base), str(target)], timeout=600)
        site = target / SITE_PACKAGES
        _pip(site, *requirements)
        if without_deps:
            _pip(site, *without_deps, deps=False)  # ember-csi: the CSI descriptor only
        trim.apply(site, python)
        shared = [str(p) for p in site.rglob("*.so")]
        if shared and shutil.which("strip"):
            run(["strip", "--strip-unneeded", *shared], timeout=300)
        trim.make_sourceless(target, system, "")
        trim.make_sourceless(site, python, f"/{SITE_PACKAGES}")
        _compile(target, site)
        target.rename(final)
    seconds = time.monotonic() - started
    log(f"{len(requirements)} Python dependencies installed in {seconds:.0f} s")
    return final


def _project() -> dict[str, Any]:
    import tomllib

    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _no_deps() -> list[str]:
    """[tool.orlop] no-deps of pyproject.toml: packages used for a data file only."""
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("tool", {})
    return list(tool.get("orlop", {}).get("no-deps", []))


def _optional() -> dict[str, list[str]]:
    extras: dict[str, list[str]] = _project().get("optional-dependencies", {})
    return extras


def _pip(site: Path, *requirements: str, deps: bool = True) -> None:
    run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--no-warn-script-location", "--target", str(site),
            *([] if deps else ["--no-deps"]), *requirements,
        ],
        timeout=PIP_TIMEOUT,
    )  # fmt: skip
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts for this host's python


def _compile(rootfs: Path, tree: Path) -> None:
    # Byte-compiled now, or every plugin start compiles Orlop and pydantic (seconds).
    run(
        [
            sys.executable, "-m", "compileall", "-q", "-j", "0",
            "-s", str(rootfs), "-p", "/", str(tree),
        ],
        timeout=600,
    )  # fmt: skip


def install_orlop(rootfs: Path, work: Path) -> None:
    """Orlop's wheel, built from a copy of the checkout (pip leaves build/ where it builds)."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "orlop", source / "orlop", ignore=shutil.ignore_patterns("__pycache__"))
    site = rootfs / SITE_PACKAGES
    _pip(site, str(source), deps=False)
    _compile(rootfs, site / "orlop")


# Run in the root filesystem: every executable and shared object finds the libraries it
# links (what trim.txt removed from /usr/lib is no one's).
LINKED_CHECK = r"""
import os, subprocess
broken = []
for top in ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/local/lib"):
    for directory, _, files in os.walk(top):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as file:
                if file.read(4) != b"\x7fELF":
                    continue
            out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
            broken += [f"{path}: {ln.strip()}" for ln in out.splitlines() if "not found" in ln]
sys.exit(f"missing libraries: {broken[:20]}" if broken else 0)
"""


def verify(kind: PluginKind, rootfs: Path) -> None:
    """Start Python in the root filesystem: Orlop, the backend and its client library import,
    every tool the backend runs is there, and nothing lacks a library it links."""
    # trim_rules.PROBE: the backend's modules and every module they import, at the top or
    # at first use (the cloud client), as the trimmed tree has them; then its tools.
    script = (
        "import shutil, sys\n"
        f"exec({trim.PROBE!r})\n"
        "if failed:\n"
        "    sys.exit(f'imports that fail: {failed}')\n"
        "missing = [t for t in kind.tools() if not shutil.which(t)]\n"
        "if missing:\n"
        "    sys.exit(f'missing tools: {missing}')\n"
        f"exec({LINKED_CHECK!r})\n"
    )
    from orlop.managed.manifest import PATH

    try:
        run(
            ["chroot", str(rootfs), "/usr/bin/env", "-i", f"PATH={PATH}",
             f"ORLOP_PLUGIN_KIND={kind.name}", "/usr/bin/python3", "-c", script, kind.name, ""],
            timeout=600,
        )  # fmt: skip
    except CommandError as error:
        message = f"build-plugin: the {kind.name} root filesystem is broken: {error}"
        raise SystemExit(message) from None


def prune(cache: Path, days: float = 3.0) -> None:
    """Remove cached layers no build used for `days` (every Orlop change makes a new one)."""
    old = time.time() - days * 86400
    for stale in cache.glob("tmp-*"):  # a killed build's (builds run under the lock)
        _discard(stale)
    for layer in cache.glob("*-*"):
        kind_of_layer = layer.name.startswith(("base-", "deps-", "rootfs-"))
        if kind_of_layer and layer.is_dir() and layer.stat().st_mtime < old:
            log(f"pruning {layer.name} (unused for {days:g} days)")
            shutil.rmtree(layer, ignore_errors=True)


CAPABILITY_BITS = {"CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24}  # linux/capability.h


def lacking_capabilities(status: str, engine: str | None) -> list[str]:
    """Capabilities a plugin may ask for that this host's bounding set (`status`: the text of
    /proc/self/status) lacks, when the engine runs here (`engine`: DOCKER_HOST): runc refuses
    to start a plugin asking for one ("unable to apply caps"). A remote engine: none known."""
    if engine and not engine.startswith("unix://"):
        return []
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            bounding = int(line.split()[1], 16)
            return [cap for cap, bit in CAPABILITY_BITS.items() if not bounding >> bit & 1]
    return []


def capabilities_to_drop(requested: Sequence[str]) -> list[str]:
    """--drop-capability, and what this host lacks (said, so a build elsewhere differs visibly)."""
    status = Path("/proc/self/status").read_text()
    lacking = lacking_capabilities(status, os.environ.get("DOCKER_HOST"))
    added = [cap for cap in lacking if cap not in requested and cap != "CAP_SYS_ADMIN"]
    for cap in added:
        log(f"this host's capability bounding set lacks {cap}: leaving it out of config.json")
    return [*requested, *added]


def size_of(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def size_verdict(kind: str, size: int, limit_mb: float) -> tuple[bool, str]:
    """(within the limit, the line saying so) for a root filesystem of `size` bytes."""
    within = size <= limit_mb * 1e6
    verdict = "within" if within else "OVER"
    return within, f"root filesystem of {kind}: {size / 1e6:.0f} MB, {verdict} {limit_mb:g} MB"


def stage(
    kind: PluginKind, rootfs: Path, into: Path, drop: Sequence[str] = (), csi: bool = False
) -> None:
    """config.json + rootfs (hard links into the cache: docker plugin create only reads)."""
    run(["cp", "-al", str(rootfs), str(into / "rootfs")], timeout=600)
    config = manifest(kind, __version__, drop)
    if csi:  # --csi: a CSI driver for Swarm (orlop/managed/csi.py)
        config = csi_manifest(config)
    (into / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    stamp = {"kind": kind.name, "version": __version__, "rootfs": rootfs.name, "built": time.time()}
    (into / "rootfs" / "etc" / "orlop-plugin.json").write_text(json.dumps(stamp) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/build-plugin", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("kind", help="local, block, ebs, s3, sshfs, … (a plugin or backend kind)")
    parser.add_argument("--name", help="plugin name (default orlop/KIND:VERSION)")
    parser.add_argument("--cache-dir", default=os.environ.get("ORLOP_PLUGIN_CACHE", DEFAULT_CACHE))
    parser.add_argument("--mirror", help="Debian archive URL (default: this host's apt source)")
    parser.add_argument("--no-create", action="store_true", help="stage only; print its directory")
    parser.add_argument(
        "--drop-capability",
        action="append",
        default=[],
        metavar="CAP",
        help="leave a capability out of config.json (one the local host lacks is left out anyway)",
    )
    parser.add_argument(
        "--size-limit", type=float, default=ROOTFS_LIMIT_MB, metavar="MB",
        help=f"the root filesystem's size limit, measured every build (default {ROOTFS_LIMIT_MB})",
    )  # fmt: skip
    parser.add_argument(
        "--enforce-size", action="store_true", help="fail, not just say so, above --size-limit"
    )
    parser.add_argument("--stage-dir", help="where to stage (default: a temporary directory)")
    # --csi: a CSI plugin for Swarm's cluster volumes (orlop/managed/csi.py, docs/csi.md)
    parser.add_argument("--csi", action="store_true", help="build a CSI driver for Swarm")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root (debootstrap, chroot)")
    kind = plugin_kind(args.kind)
    args.drop_capability = capabilities_to_drop(args.drop_capability)
    manifest(kind, __version__, args.drop_capability)  # bad flags fail before minutes of build
    cache = Path(args.cache_dir)
    name = args.name or f"orlop/{kind.name}{'-csi' if args.csi else ''}:{__version__}"
    staging = Path(args.stage_dir or tempfile.mkdtemp(prefix=f"orlop-plugin-{kind.name}-"))
    staging.mkdir(parents=True, exist_ok=True)
    handed_over = False  # with --no-create the staging directory is the result
    try:
        with locked(cache):  # staged under the lock: pruning never removes what is linked
            base = base_rootfs(kind, cache, args.mirror or debian_mirror())
            rootfs = orlop_rootfs(kind, base, cache, csi=args.csi)
            stage(kind, rootfs, staging, args.drop_capability, csi=args.csi)
            prune(cache)
        within, line = size_verdict(kind.name, size_of(rootfs), args.size_limit)
        site = rootfs / SITE_PACKAGES
        log(f"{line} (dist-packages {size_of(site) / 1e6:.0f} MB; {rootfs})")
        if not within:
            log(f"the largest in {SITE_PACKAGES} (trim them in {TRIM_LIST}):")
            for size, entry in trim.largest(site, 30):
                log(f"  {size / 1e6:6.1f} MB  {entry}")
            if args.enforce_size:
                raise SystemExit(f"build-plugin: {line}; trim it (see {TRIM_LIST})")
        if args.no_create:
            handed_over = True
            print(staging)
            return 0
        started = time.monotonic()
        run(["docker", "plugin", "create", name, str(staging)], timeout=CREATE_TIMEOUT)
        log(f"docker plugin create took {time.monotonic() - started:.0f} s")
    finally:
        if not handed_over:  # a failed build leaves no half-staged directory
            shutil.rmtree(staging, ignore_errors=True)
    print(name)
    return 0


if __name__ == "__main__":
    from orlop.core.model import OrlopError

    try:
        sys.exit(main())
    except OrlopError as error:  # bad input or a failed command: its message says enough
        sys.exit(f"build-plugin: {error}")
