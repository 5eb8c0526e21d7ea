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

and `#` starts a comment. Globs are `glob`'s: `*` stays within one path component.
"""

from __future__ import annotations

import ast
import fnmatch
import glob
import shutil
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Rules:
    remove: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    docstrings: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The rules in a stable form (a cache key)."""
        lines = [*self.remove, *(f"!{k}" for k in self.keep)]
        return "\n".join([*lines, *(f"docstrings {d}" for d in self.docstrings)])

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
        elif line.startswith("docstrings "):
            current.docstrings.append(line.removeprefix("docstrings ").strip())
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
