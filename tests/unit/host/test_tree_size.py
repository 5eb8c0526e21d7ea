"""Usage of a directory tree: allocated and apparent bytes, within a time budget."""

from __future__ import annotations

from pathlib import Path

from orlop.host.tree import tree_size


def test_tree_size(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one").write_bytes(b"x" * 10_000)
    (tmp_path / "a" / "b" / "two").write_bytes(b"y" * 5_000)
    (tmp_path / "link").symlink_to("/etc")  # never followed
    assert tree_size(str(tmp_path), 5, allocated=False) == 15_000 + len("/etc")
    allocated = tree_size(str(tmp_path), 5)
    assert allocated is not None and allocated >= 15_000


def test_tree_size_gives_up_past_its_budget(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"z")
    assert tree_size(str(tmp_path), -1) is None
    assert tree_size(str(tmp_path / "missing"), 5) is None
