"""The trim rules of trim.txt: what a managed plugin's root filesystem leaves out, by kind.

trim.txt has sections. `[rootfs]` applies to the Debian root filesystem (paths relative to
/); `[python]` to every kind's dist-packages, `[python KIND …]` to those kinds' only (paths
relative to dist-packages). In a section, a line is

    PATTERN              remove what the glob matches (a directory with all it holds)
    !PATTERN             keep what matches, even where a removal in the section matches it
                         or a directory holding it
    docstrings PATTERN   rewrite the modules under the matched directories without their
                         docstrings (generated clients: most of their bytes; nothing reads
                         __doc__ there)
    prune-imports FILE   drop FILE's `from .x import …` of modules the rules removed, and
                         their names from its __all__ (a package that imports all of its
                         generated services while Orlop calls a few)
    unlinked PATTERN     remove the matched shared libraries that no executable or library
                         left in the tree links (`readelf -d`: NEEDED, transitively)
    sourceless PATTERN   ship the matched modules byte-compiled only (`name.pyc` beside
                         where `name.py` was): tracebacks there show no source lines
    with-source PATTERN  the matched files keep their source where a sourceless rule
                         matches them (a module read as data, not imported)

and `#` starts a comment. Globs are `glob`'s: `*` stays within one path component.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import glob
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# What a kind's plugin loads, run by a Python that has the kind's packages (the trimmed
# tree, in build_plugin.verify; this checkout's venv, in tests/unit/managed/test_trim.py):
# argv[1] the kind, argv[2] code to run last (a client's first call). Every file opened is
# recorded; the JSON line printed last says which, and which imports failed.
PROBE = r"""
import ast, importlib, json, pkgutil, sys
opened = set()
sys.addaudithook(lambda event, args: opened.add(str(args[0]))
                 if event == "open" and isinstance(args[0], str) else None)
import orlop.daemon, orlop.managed.start, orlop.managed.env
from orlop.managed.kinds import plugin_kind
kind = plugin_kind(sys.argv[1])
kind.variables()
package = kind.backend_class().__module__.rsplit(".", 1)[0]
names = {package} | {m.name for m in pkgutil.walk_packages(
    importlib.import_module(package).__path__, package + ".")}
wanted = set()
for name in sorted(names):
    module = importlib.import_module(name)
    source = module.__spec__.loader.get_source(name) or ""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            wanted.add(node.module)
failed = []
for name in sorted(wanted):
    try:
        importlib.import_module(name)
    except ImportError as error:
        failed.append(f"{name}: {error}")
exec(sys.argv[2])
files = opened | {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
print(json.dumps({"files": sorted(f for f in files if f), "failed": failed}))
"""


@dataclass
class Rules:
    remove: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    docstrings: list[str] = field(default_factory=list)
    prune_imports: list[str] = field(default_factory=list)
    unlinked: list[str] = field(default_factory=list)
    sourceless: list[str] = field(default_factory=list)
    with_source: list[str] = field(default_factory=list)

    def text(self, with_sourceless: bool = True) -> str:
        """The rules in a stable form (a cache key; sourceless applies where a layer
        byte-compiles, so a layer that does not compile leaves it out of its key)."""
        lines = [*self.remove, *(f"!{k}" for k in self.keep)]
        lines += [f"docstrings {d}" for d in self.docstrings]
        lines += [f"prune-imports {f}" for f in self.prune_imports]
        lines += [f"unlinked {u}" for u in self.unlinked]
        if with_sourceless:
            lines += [f"sourceless {p}" for p in self.sourceless]
            lines += [f"with-source {p}" for p in self.with_source]
        return "\n".join(lines)

    def kept(self, relative: str) -> bool:
        """Whether a keep rule names `relative` itself."""
        return any(_matches(relative, pattern) for pattern in self.keep)

    def holds_kept(self, relative: str) -> bool:
        """Whether `relative` is a directory a keep rule names something under."""
        return any(_literal(pattern).startswith(relative + "/") for pattern in self.keep)

    def removes(self, relative: str) -> bool:
        """Whether the rules remove the file `relative` (a path under the tree's root)."""
        parts = relative.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            directory = depth < len(parts)
            for pattern in self.remove:
                # A pattern ending in / matches directories only (glob's meaning).
                if pattern.endswith("/") and not directory:
                    continue
                if _matches(prefix, pattern.rstrip("/")) and not self._saved(parts, depth):
                    return True
        return False

    def _saved(self, parts: list[str], depth: int) -> bool:
        """Whether a keep rule names the path's first `depth` parts or a parent of the path
        under them (a removal of a directory spares what it holds that is kept)."""
        return any(self.kept("/".join(parts[:deeper])) for deeper in range(depth, len(parts) + 1))


def _literal(pattern: str) -> str:
    """The part of a glob before its first wildcard."""
    for wildcard in "*?[":
        pattern = pattern.split(wildcard, 1)[0]
    return pattern


def _matches(relative: str, pattern: str) -> bool:
    """glob's semantics on a path: `*` never crosses a `/`."""
    names, patterns = relative.split("/"), pattern.split("/")
    return len(names) == len(patterns) and all(
        fnmatch.fnmatchcase(n, p) for n, p in zip(names, patterns, strict=True)
    )


def parse(text: str) -> dict[tuple[str, tuple[str, ...]], Rules]:
    """{(where, kinds): rules}; `kinds` is () for a section that applies to every kind."""
    sections: dict[tuple[str, tuple[str, ...]], Rules] = {}
    current: Rules | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue  # a blank line would match the tree's root itself
        if line.startswith("["):
            words = line.strip("[]").split()
            if not line.endswith("]") or not words or words[0] not in ("rootfs", "python"):
                raise ValueError(f"trim.txt line {number}: a section is [rootfs] or [python KIND…]")
            if words[0] == "rootfs" and len(words) > 1:
                raise ValueError(f"trim.txt line {number}: [rootfs] is the same for every kind")
            current = sections.setdefault((words[0], tuple(sorted(words[1:]))), Rules())
            continue
        if current is None:
            raise ValueError(f"trim.txt line {number}: {line!r} is before any [section]")
        if line.startswith(("/", "!/")) or ".." in line.split("/"):
            raise ValueError(f"trim.txt line {number}: {line!r} must be relative, without ..")
        if line.startswith("!"):
            current.keep.append(line[1:])
        elif line.startswith(
            ("docstrings ", "prune-imports ", "unlinked ", "sourceless ", "with-source ")
        ):
            directive, argument = line.split(None, 1)
            getattr(current, directive.replace("-", "_")).append(argument.strip())
        else:
            current.remove.append(line)
    return sections


def rules(text: str, where: str, kind: str | None = None) -> Rules:
    """Every rule of `where` ("rootfs", "python") that applies to `kind`."""
    merged = Rules()
    for (section, kinds), found in parse(text).items():
        if section == where and (not kinds or kind in kinds):
            merged.remove += found.remove
            merged.keep += found.keep
            merged.docstrings += found.docstrings
            merged.prune_imports += found.prune_imports
            merged.unlinked += found.unlinked
            merged.sourceless += found.sourceless
            merged.with_source += found.with_source
    return merged


def apply(root: Path, rules: Rules) -> None:
    """Remove what the rules remove under `root`; drop docstrings where they say."""
    for pattern in rules.remove:
        for match in sorted(glob.glob(f"{root}/{pattern}")):  # a Path would drop a final /
            _prune(root, Path(match), rules)
    for pattern in rules.docstrings:
        for tree in glob.glob(str(root / pattern)):
            for module in Path(tree).rglob("*.py"):
                module.write_text(without_docstrings(module.read_text()))
    if rules.unlinked:
        remove_unlinked(root, rules.unlinked)
    for name in rules.prune_imports:
        for module in glob.glob(f"{root}/{name}"):
            path = Path(module)
            path.write_text(without_missing_imports(path.read_text(), path.parent))


def remove_unlinked(root: Path, patterns: list[str]) -> list[Path]:
    """Remove the libraries `patterns` match that nothing else left under `root` links,
    directly or through another library kept; what was removed."""
    candidates = {Path(m) for p in patterns for m in glob.glob(f"{root}/{p}")}
    others = [
        path
        for path in root.rglob("*")
        if path not in candidates and path.is_file() and not path.is_symlink() and _elf(path)
    ]
    needed = _needed(others)
    kept: set[Path] = set()
    while True:
        wanted = {c for c in candidates - kept if c.name in needed}
        wanted |= {c.resolve() for c in wanted if c.is_symlink()} & candidates
        if not wanted - kept:
            break
        kept |= wanted
        needed |= _needed([c for c in wanted if not c.is_symlink()])
    removed = sorted(candidates - kept)
    for path in removed:
        _remove(path)
    return removed


def _elf(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(4) == b"\x7fELF"
    except OSError:
        return False


def _needed(paths: list[Path]) -> set[str]:
    """The NEEDED entries of these ELF files (readelf, from binutils: the build has it)."""
    import subprocess

    found: set[str] = set()
    for start in range(0, len(paths), 200):
        out = subprocess.run(
            ["readelf", "-d", *map(str, paths[start : start + 200])],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        for line in out.splitlines():
            if "(NEEDED)" in line and "[" in line:
                found.add(line.rsplit("[", 1)[1].rstrip("]"))
    return found


def without_missing_imports(source: str, package: Path) -> str:
    """`source` (a package's __init__ in `package`) without its top-level `from .x import
    names` where .x is gone, and without those names in a literal `__all__`."""
    tree = ast.parse(source)
    dropped: set[str] = set()
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            target = package.joinpath(*node.module.split("."))
            if not target.is_dir() and not target.with_suffix(".py").exists():
                dropped.update(alias.asname or alias.name for alias in node.names)
                continue
        body.append(node)
    for node in body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, (ast.Tuple, ast.List))
        ):
            node.value.elts = [
                e
                for e in node.value.elts
                if not (isinstance(e, ast.Constant) and e.value in dropped)
            ]
    tree.body = body
    return ast.unparse(tree) + "\n"


def make_sourceless(root: Path, rules: Rules, inside: str) -> None:
    """Byte-compile what the sourceless rules match to `name.pyc` beside `name.py` (the
    path in tracebacks: `inside`, where `root` is in the plugin) and remove the source."""
    import compileall
    import py_compile

    for pattern in rules.sourceless:
        for match in sorted(glob.glob(f"{root}/{pattern}")):
            path = Path(match)
            shown = f"{inside}/{path.relative_to(root)}"
            if path.is_dir():
                # A module that does not compile (a template, Python 2) keeps its source.
                compileall.compile_dir(path, ddir=shown, legacy=True, quiet=2, workers=0)
                sources = list(path.rglob("*.py"))
                caches = list(path.rglob("__pycache__"))
            elif path.suffix == ".py":
                with contextlib.suppress(py_compile.PyCompileError, SyntaxError):
                    py_compile.compile(str(path), str(path) + "c", shown, doraise=True)
                sources, caches = [path], []
            else:
                continue
            for source in sources:
                relative = str(source.relative_to(root))
                if any(_matches(relative, pattern) for pattern in rules.with_source):
                    continue  # read as data, not imported (e.g. the CSI descriptor)
                if source.with_suffix(".pyc").exists():
                    source.unlink()
            for cache in caches:
                shutil.rmtree(cache, ignore_errors=True)


def _prune(root: Path, path: Path, rules: Rules) -> None:
    """Remove `path` but what a keep rule names (a directory: its other contents go)."""
    relative = str(path.relative_to(root))
    if rules.kept(relative) or (not path.exists() and not path.is_symlink()):
        return
    if rules.holds_kept(relative) and path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _prune(root, child, rules)
    else:
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def without_docstrings(source: str) -> str:
    """`source` without its module, class and function docstrings (what -OO drops)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def largest(root: Path, count: int = 30) -> list[tuple[int, str]]:
    """The `count` largest entries directly under `root`: (bytes, name), largest first."""
    sizes = [(tree_size(entry), entry.name) for entry in root.iterdir()]
    return sorted(sizes, reverse=True)[:count]


def tree_size(path: Path) -> int:
    """Bytes of the files under `path` (a file: its own), symlinks as links."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
